"""Lab image cache: the key follows the recipe, a half-written image is never returned."""
import shutil
from pathlib import Path

import pytest

from k1prov.lab import image as lab_image

RECIPE = Path(lab_image.__file__).resolve().parents[2] / "images" / "lab"


@pytest.fixture
def recipe(tmp_path):
    copy = tmp_path / "recipe"
    shutil.copytree(RECIPE, copy)
    return copy


def test_recipe_files_exist():
    # The build reads these; a rename would break it only at build time.
    assert (RECIPE / "packages.txt").is_file()
    assert (RECIPE / "requirements-spark.txt").is_file()
    assert (RECIPE / "files/usr/local/sbin/k1p-init").stat().st_mode & 0o111
    assert (RECIPE / "files/usr/sbin/policy-rc.d").stat().st_mode & 0o111


def test_package_list_has_what_the_roles_need():
    packages = lab_image._requirement_lines(RECIPE / "packages.txt")
    for needed in ("openssh-server", "python3", "openjdk-17-jre-headless", "zookeeper", "iproute2"):
        assert needed in packages
    spark = lab_image._requirement_lines(RECIPE / "requirements-spark.txt")
    # Spark 3.5 (the last with Mesos support) and numpy, which pyspark.ml needs (bench kmeans).
    assert "pyspark==3.5.9" in spark
    assert any(line.startswith("numpy") for line in spark)


def test_key_changes_with_content_mode_and_new_files_but_not_readme(recipe):
    key = lab_image.recipe_key(recipe)
    assert lab_image.recipe_key(recipe) == key
    (recipe / "README.md").write_text("notes")
    assert lab_image.recipe_key(recipe) == key
    (recipe / "packages.txt").write_text((recipe / "packages.txt").read_text() + "htop\n")
    changed = lab_image.recipe_key(recipe)
    assert changed != key
    (recipe / "files/usr/local/sbin/k1p-service").chmod(0o644)
    assert lab_image.recipe_key(recipe) != changed
    (recipe / "files/etc/motd").write_text("hello")
    assert len({key, changed, lab_image.recipe_key(recipe)}) == 3


def test_cached_image_needs_the_sidecar(recipe, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    image = cache / f"k1prov-lab-{lab_image.recipe_key(recipe)}.raw"
    image.write_bytes(b"partial")
    assert lab_image.cached_image(cache, recipe) is None
    (cache / (image.name + ".sha256")).write_text(f"{'ab' * 32}  {image.name}\n")
    assert lab_image.cached_image(cache, recipe) == image
    assert lab_image.image_sha256(image) == "ab" * 32
    # build returns the cached image without running anything
    assert lab_image.build_lab_image(cache, timeout=1, recipe_dir=recipe) == image


def test_apt_mirrors_are_urls():
    mirror, security = lab_image.apt_mirrors()
    assert mirror.startswith("http") and mirror.endswith("/debian")
    assert security.startswith("http") and security.endswith("/debian-security")
