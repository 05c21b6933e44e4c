import io

from rich.console import Console

from k1prov.fanout import Policy, Report, Result, Status, run_fanout
from k1prov.fanout.progress import RichProgress, render_report


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=140, color_system=None, force_terminal=False), buf


def test_report_prints_identical_outputs_once_with_folded_hosts():
    results = [Result(f"worker{i:03d}", Status.OK, output="Linux 6.1\n") for i in range(1, 41)]
    results += [Result("db1", Status.FAILED, error="db1: connection refused", attempts=3),
                Result("db2", Status.SKIPPED, error="failure budget exhausted")]
    report = Report(results=results, started=100.0, finished=103.5, budget_exhausted=True,
                    final_concurrency=12)
    console, buf = _console()
    render_report(report, console, "uname")
    text = buf.getvalue()
    assert text.count("Linux 6.1") == 1
    assert "worker[001-040]" in text and "db1: connection refused" in text
    assert text.index("worker[001-040]") < text.index("db1") < text.index("db2")
    assert "40 ok, 1 failed, 1 skipped in 3.5s, concurrency 12 (failure budget exhausted)" in text


def test_remote_output_is_not_rich_markup():
    report = Report(results=[Result("h1", Status.OK, output="[bold red]not markup[/bold red]")])
    console, buf = _console()
    render_report(report, console, "t")
    assert "[bold red]not markup[/bold red]" in buf.getvalue()


def test_progress_sink_follows_a_run():
    console, buf = _console()
    sink = RichProgress("ssh.run", console=console)

    def fn(i):
        if i == 3:
            raise RuntimeError("nope")
        return "ok"

    report = run_fanout(range(10), fn, key=str, events=sink,
                        policy=Policy(kind="t", concurrency=2, failure_budget=1.0))
    text = buf.getvalue()
    assert len(report.failed) == 1
    assert "10/10" in text and "failed 1" in text and "concurrency 2" in text
    assert "in flight 0" in text
