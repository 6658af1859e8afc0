# tqmon: `make demo` shows it on a throwaway cluster, `make test` runs the tests on real servers.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# devtools/ (throwaway servers, simulated fleet, demo, generators' common part) is not in the
# wheel: it runs from the checkout.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: install system-deps node-deps catalog demo demo-stack dashboard-png test bench lint clean dist deb \
  kubernetes

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q plugin  # as a wheel install would: no compiling per run
	touch $@

system-deps:
	.ci/system-deps

# BullMQ (pinned in tests/bullmq/package-lock.json) for the BullMQ tests and bench
node-deps: tests/bullmq/node_modules/.installed

tests/bullmq/node_modules/.installed: tests/bullmq/package.json tests/bullmq/package-lock.json
	cd tests/bullmq && npm ci --no-audit --no-fund --loglevel=error
	touch $@

catalog: install  # plugin/tqmon/catalog.json from catalog.yaml, and README.md's metrics table
	$(BIN)/python -m devtools.catalog_source  # (both committed; tests check them)
	$(BIN)/python -m devtools.readme

acl-docs: install  # the ACLs in docs/operations.md and docs/heartbeat-contract.md, from acl.py
	$(BIN)/python -m devtools.acl_docs

demo: install
	.ci/system-deps --redis-only
	$(BIN)/python -m devtools.demo

test: install system-deps node-deps
	$(BIN)/pytest

# The demo plus node_exporter and Prometheus on loopback, alerts loaded with short `for:`
# (tests/e2e-overrides.yaml): open the Prometheus UI it prints and kill things. Ctrl-C stops all.
demo-stack: install system-deps
	$(BIN)/python alerts/generate.py --overrides tests/e2e-overrides.yaml \
	  --output build/demo-stack/tqmon-rules.yaml
	$(BIN)/python -m devtools.stack --rules build/demo-stack/tqmon-rules.yaml

# docs/img/dashboard.png: the demo stack headless for 120 s (a worker killed, a backlog), every
# panel's queries read from its Prometheus, the dashboard drawn as Grafana lays it out. Fails,
# naming the panel, when a panel not in dashboards/demo-empty-panels.yaml shows nothing.
dashboard-png: install system-deps
	$(BIN)/python -m devtools.dashboard_png --output docs/img/dashboard.png

bench: install system-deps node-deps
	$(BIN)/python tests/bench.py

lint: install
	$(BIN)/ruff check plugin devtools tests dashboards alerts mixin

clean:
	rm -rf $(VENV) build *.egg-info plugin/*.egg-info .pytest_cache .ruff_cache

# --- Release: the sdist and wheel, the Debian package, the Kubernetes manifests -------------------
# make dist        build/dist/tqmon-V.tar.gz and tqmon-V-py3-none-any.whl (the wheel is built from
#                  the sdist, so the sdist is complete); twine check on both. No network: the
#                  venv's setuptools, not an isolated build environment.
# make deb         build/tqmon_V_all.deb (devtools/debian.py; the man page from `tqmon --help`)
# make kubernetes [VALUES=FILE]  deploy/kubernetes/ from the rule file (committed; a test checks
#                  it is current); with VALUES (the redis_exporter chart's names) build/kubernetes/
dist: install
	rm -rf build/dist && mkdir -p build
	$(BIN)/python -m build --no-isolation --outdir build/dist . >build/dist.log 2>&1 \
	  || { cat build/dist.log; exit 1; }
	$(BIN)/twine check --strict build/dist/*

deb: install
	$(BIN)/python -m devtools.debian --output build

kubernetes: install alerts
	$(BIN)/python -m devtools.kubernetes \
	  $(if $(VALUES),--values $(VALUES) --output build/kubernetes,--output deploy/kubernetes)

# --- Provisioning: Grafana dashboard and Prometheus rules, generated from the metric catalog ----
# make dashboards [GRAFANA_DASHBOARDS_DIR=DIR] [OVERRIDES=FILE]  dashboard JSON (and the rules);
#     with GRAFANA_DASHBOARDS_DIR, installs tqmon.json and the provider (as tqmon.yaml) there.
# make alerts [PROMETHEUS_RULES_DIR=DIR] [OVERRIDES=FILE]        rule file; installs it into DIR.
# Without OVERRIDES they rewrite the committed dashboards/tqmon.json and alerts/tqmon-rules.yaml
# (a test fails if those are stale); with OVERRIDES=FILE they write build/ instead.
OVERRIDES ?=
GEN_DIR  := $(if $(OVERRIDES),build/,)
GEN_ARGS := $(if $(OVERRIDES),--overrides $(OVERRIDES),)

.PHONY: dashboards alerts grafana-schema mixin

# tests/grafana-schema/dashboard.schema.json: Grafana's published dashboard types (npm
# @grafana/schema) as JSON Schema (tests/grafana-schema/README.md). Needs npm; committed.
GRAFANA_SCHEMA := 13.2.3
grafana-schema:
	rm -rf build/grafana-schema && mkdir -p build/grafana-schema
	cd build/grafana-schema && npm pack --silent @grafana/schema@$(GRAFANA_SCHEMA) \
	  && tar xzf grafana-schema-$(GRAFANA_SCHEMA).tgz \
	  && npm install --no-audit --no-fund --loglevel=error ts-json-schema-generator@2.9.0 \
	  && node_modules/.bin/ts-json-schema-generator --no-type-check --type Dashboard \
	    --path package/dist/types/raw/dashboard/x/types.gen.d.ts \
	    -o $(CURDIR)/tests/grafana-schema/dashboard.schema.json

# The monitoring mixin (mixin/, jsonnet) from the same catalog: `make dashboards` makes it too.
mixin: install
	$(BIN)/python mixin/generate.py

dashboards: install alerts
	$(BIN)/python dashboards/generate.py $(GEN_ARGS) --output $(GEN_DIR)dashboards/tqmon.json
ifeq ($(OVERRIDES),)
	$(BIN)/python mixin/generate.py
endif
ifneq ($(GRAFANA_DASHBOARDS_DIR),)
	install -d $(GRAFANA_DASHBOARDS_DIR)
	install -m 644 $(GEN_DIR)dashboards/tqmon.json $(GRAFANA_DASHBOARDS_DIR)/tqmon.json
	sed 's|^\( *path:\).*|\1 $(abspath $(GRAFANA_DASHBOARDS_DIR))|' \
	  dashboards/provisioning/dashboards.yaml > $(GRAFANA_DASHBOARDS_DIR)/tqmon.yaml
	@echo "installed tqmon.json and the provider tqmon.yaml in $(GRAFANA_DASHBOARDS_DIR)"
endif

alerts: install
	$(BIN)/python alerts/generate.py $(GEN_ARGS) --output $(GEN_DIR)alerts/tqmon-rules.yaml
ifeq ($(OVERRIDES),)
	$(BIN)/python tests/slo_scenarios.py  # the SLO promtool tests expect the rules' texts
endif
ifneq ($(PROMETHEUS_RULES_DIR),)
	install -d $(PROMETHEUS_RULES_DIR)
	install -m 644 $(GEN_DIR)alerts/tqmon-rules.yaml $(PROMETHEUS_RULES_DIR)/tqmon-rules.yaml
	@echo "installed tqmon-rules.yaml in $(PROMETHEUS_RULES_DIR)"
endif
