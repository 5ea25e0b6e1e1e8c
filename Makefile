# tidemill — developer and CI entry points. `make help` lists the targets.
#
# The test suite needs Kafka, PostgreSQL and MariaDB on 127.0.0.1; `make test`
# starts them first (scripts/services-up.sh, no Docker needed) and leaves them
# running. `make services-down` stops them.

CONFIG ?= config/local.toml
CARGO  ?= cargo
# python3 with PyYAML (Debian: python3-yaml) for docker-check. The system
# interpreter has it on Debian; override with PYTHON=... if needed.
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do $$p -c 'import yaml' 2>/dev/null && { echo $$p; break; }; done)

.DEFAULT_GOAL := help

.PHONY: demo-cdc deps-build doc-check deny sbom chaos chaos-quick fleet fleet-quick help build fmt fmt-check lint services-up services-down test test-consumer-protocol demo run check docker-check deploy-check bench bench-quick

help: ## List the targets
	@echo "Usage: make <target> [CONFIG=path/to/config.toml]"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN { FS = ":.*## " } { printf "  %-14s %s\n", $$1, $$2 }'

deps-build: ## Install the Debian packages a build needs, if missing (scripts/install-deps.sh)
	scripts/install-deps.sh build

build: deps-build ## Build the release binary (target/release/tidemill)
	$(CARGO) build --release

fmt: ## Format all Rust code
	$(CARGO) fmt --all

fmt-check: ## Check formatting without changing files
	$(CARGO) fmt --all -- --check

lint: deps-build fmt-check ## fmt-check + clippy with warnings as errors + import circles + doc links + deny (licenses, bans, sources)
	$(CARGO) clippy --all-targets -- -D warnings
	python3 scripts/import-cycles.py
	$(MAKE) --no-print-directory doc-check
	$(MAKE) --no-print-directory deny

doc-check: ## The code's documentation builds with every link resolved (private items included)
	RUSTDOCFLAGS="-D warnings -A rustdoc::private_intra_doc_links" $(CARGO) doc --no-deps --document-private-items

deny: ## Licenses, banned crates and sources of the dependency graph (deny.toml; installs cargo-deny from crates.io if missing, ~5 min)
	@command -v cargo-deny >/dev/null 2>&1 || $(CARGO) install cargo-deny --locked --no-default-features
	$(CARGO) deny check licenses bans sources

sbom: ## CycloneDX SBOM of the dependency graph in target/sbom/ (installs cargo-cyclonedx from crates.io if missing)
	@command -v cargo-cyclonedx >/dev/null 2>&1 || $(CARGO) install cargo-cyclonedx --locked
	$(CARGO) cyclonedx --format json --override-filename tidemill.cdx
	mkdir -p target/sbom && mv tidemill.cdx.json target/sbom/

services-up: deps-build ## Start Kafka, PostgreSQL and MariaDB on 127.0.0.1 (idempotent; installs missing packages and builds the test OpenTelemetry Collector once)
	scripts/install-deps.sh services tools
	scripts/install-otelcol.sh >/dev/null
	scripts/services-up.sh

services-down: ## Stop the services started by services-up
	scripts/services-down.sh

test: services-up ## Start the services, run all tests (crash/rebalance suites under both group protocols), docker-check, deploy-check
	$(CARGO) test --all-targets -- --test-threads=4
	$(MAKE) --no-print-directory test-consumer-protocol
	$(MAKE) --no-print-directory docker-check deploy-check

# The suites whose outcome depends on the consumer group protocol, again under
# KIP-848's (the first run used the classic protocol, on every database; the
# protocol does not meet the database, so this pass runs PostgreSQL's variants).
CONSUMER_PROTOCOL_SUITES = --test exactly_once --test faults --test stateful_faults --test kafka_offsets

test-consumer-protocol: services-up ## Crash, zombie and rebalance suites with group_protocol = "consumer" (KIP-848)
	TIDEMILL_TEST_GROUP_PROTOCOL=consumer $(CARGO) test $(CONSUMER_PROTOCOL_SUITES) -- --test-threads=4 --skip ::mariadb --skip ::sqlite

bench: services-up build ## Full benchmark: baselines, tidemill W1-W3, rate/latency, tracing, peers (target/bench/report.md)
	$(CARGO) run --release --example bench -- $(BENCH_ARGS)

bench-quick: services-up build ## Benchmark smoke run (small N, no peers, still verified; < 2 min after the build)
	$(CARGO) run --release --example bench -- --quick $(BENCH_ARGS)

fleet: services-up build ## Fleet scenarios: scale, roll, kill, pause, under both protocols, PostgreSQL and MariaDB (target/fleet/report.md)
	$(CARGO) run --release --example fleet -- $(FLEET_ARGS)

fleet-quick: services-up build ## Fleet smoke run: 3 instances, one rolling restart, one SIGKILL; correctness asserted, no timing targets
	$(CARGO) run --release --example fleet -- --quick $(FLEET_ARGS)

CHAOS_DBS ?= postgres mariadb sqlite
chaos: services-up build ## Chaos soak on each database (CHAOS_DBS): >= 50 SIGKILLs, SIGSTOPs, database restarts and refusals, 3 broker restarts, poison bursts; exact or it fails (target/chaos/<db>/report.md)
	for db in $(CHAOS_DBS); do $(CARGO) run --release --example chaos -- --db $$db --out target/chaos/$$db $(CHAOS_ARGS) || exit 1; done

chaos-quick: services-up build ## Chaos smoke run on each database: one fault of each kind (~2 min each); exact or it fails
	for db in $(CHAOS_DBS); do $(CARGO) run --release --example chaos -- --quick --db $$db --out target/chaos/$$db $(CHAOS_ARGS) || exit 1; done

demo: deps-build ## Run the self-contained demo
	$(CARGO) run --release -- demo

demo-cdc: services-up build ## Database to database: PostgreSQL -> Debezium -> Kafka -> tidemill -> SQLite, end to end
	bash scripts/demo-cdc.sh

run: ## Run the pipeline (CONFIG=config/local.toml by default)
	$(CARGO) run --release -- run --config $(CONFIG)

check: ## Validate CONFIG and check connectivity
	$(CARGO) run --release -- check --config $(CONFIG)

deploy-check: ## Render the Helm chart's variants and validate them offline (installs helm and a venv if missing)
	scripts/deploy-check.sh

docker-check: ## Sanity-check docker/ files (YAML parses, Dockerfile shape)
	@test -n "$(PYTHON)" || { echo "docker-check: need python3 with PyYAML (apt-get install python3-yaml)" >&2; exit 1; }
	$(PYTHON) scripts/docker-check.py
