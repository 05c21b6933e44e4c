#!/bin/sh
# k1prov lab image: no init system runs here, and packages must never start
# services on install; role scripts start daemons themselves (k1p-service).
exit 101
