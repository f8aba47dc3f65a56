# proxyharvest — build, test and run the whole pipeline on a local AWS.
#
#   make run          one job on the local stack (brings it up if needed), with a summary
#   make local-test   every test, end to end against the local stack, then tear-down
#   make local-test EMULATOR=localstack   the same suite with LocalStack for S3/SQS (moto for DynamoDB)
#
# Everything listens on 127.0.0.1 only. State (PIDs, logs, manifest, env) lives in .local/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

EMULATOR ?= moto
CACHE ?= $(HOME)/.cache/proxyharvest
export CARGO_TARGET_DIR ?= /var/tmp/proxyharvest-target
PROFILE ?= debug
BIN := $(CARGO_TARGET_DIR)/$(PROFILE)
CARGO_PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)

# The LocalStack leg's moto (DynamoDB only) has its own port, so both legs can be up at once.
MOTO_PORT ?= $(if $(filter localstack,$(EMULATOR)),4598,4599)
LOCALSTACK_PORT ?= 4566
LAMBDA_PORT ?= $(if $(filter localstack,$(EMULATOR)),9002,9001)
# Function URLs (the judge) get ports from here up.
URL_PORT_BASE ?= $(if $(filter localstack,$(EMULATOR)),9201,9101)
STACK ?= proxyharvest
# The local stack's validators are short-lived, so that the fault tests (a killed validator's
# message coming back, continuation chunks) run in minutes; the visibility stays 6x the timeout.
VALIDATOR_TIMEOUT ?= 20
CHUNK_VISIBILITY ?= 120
STATE ?= .local/$(EMULATOR)

MOTO_VENV := $(CACHE)/venv-moto
LOCALSTACK_VENV := $(CACHE)/venv-localstack
# LocalStack 2026.3.0 needs Python 3.13 (3.11 and 3.12 fail at start).
PYTHON313 ?= $(shell infra/local/find-python313.sh)

# Test credentials and endpoints: no SDK ever reaches for AWS or a metadata address.
AWS_TEST_ENV := AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test \
	AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=2
ifeq ($(EMULATOR),localstack)
ENDPOINT_ENV := AWS_ENDPOINT_URL=http://127.0.0.1:$(LOCALSTACK_PORT) \
	AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$(MOTO_PORT)
else
ENDPOINT_ENV := AWS_ENDPOINT_URL=http://127.0.0.1:$(MOTO_PORT)
endif
LOCAL_ENV := $(AWS_TEST_ENV) $(ENDPOINT_ENV) AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$(LAMBDA_PORT)

.PHONY: help build test lint fmt local-up local-down local-test run demo deploy bench bench-pipeline \
	venv-moto venv-localstack emulator deploy-local runtime

help:
	@sed -n '2,9p' Makefile | sed 's/^# \{0,1\}//'

# All targets: the tests' dev-dependencies change feature resolution, and building them here once
# keeps `cargo test` from compiling the AWS SDK a second time.
build:
	cargo build --workspace --all-targets $(CARGO_PROFILE_FLAG)

test:
	cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(MOTO_VENV)/bin/cfn-lint infra/template.yaml

fmt:
	cargo fmt --all

# ---- the tools ----------------------------------------------------------------------------------
$(MOTO_VENV)/.ok:
	python3 -m venv $(MOTO_VENV)
	$(MOTO_VENV)/bin/pip install -q -r infra/local/requirements.txt
	touch $@
venv-moto: $(MOTO_VENV)/.ok

$(LOCALSTACK_VENV)/.ok:
	@test -n "$(PYTHON313)" || { echo "LocalStack 2026.3.0 needs Python 3.13, which this machine lacks" >&2; exit 1; }
	$(PYTHON313) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/pip install -q -r infra/local/requirements-localstack.txt
	touch $@
venv-localstack: $(LOCALSTACK_VENV)/.ok

# ---- the local stack ----------------------------------------------------------------------------
emulator: venv-moto $(if $(filter localstack,$(EMULATOR)),venv-localstack,)
	@mkdir -p $(STATE)
	infra/local/service.sh start moto $(STATE) $(MOTO_PORT) \
		$(MOTO_VENV)/bin/python infra/local/moto_server.py -H 127.0.0.1 -p $(MOTO_PORT)
ifeq ($(EMULATOR),localstack)
	GATEWAY_LISTEN=127.0.0.1:$(LOCALSTACK_PORT) GATEWAY_SERVER=hypercorn OVERRIDE_IN_DOCKER=0 \
	DNS_ADDRESS=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 LOCALSTACK_HOST=127.0.0.1:$(LOCALSTACK_PORT) \
	SQS_ENDPOINT_STRATEGY=path FILESYSTEM_ROOT=$(abspath $(STATE))/localstack-fs \
	SERVICES=s3,sqs,cloudformation,events,iam,sts,logs \
	infra/local/service.sh start localstack $(STATE) $(LOCALSTACK_PORT) \
		$(LOCALSTACK_VENV)/bin/python -m localstack.runtime.main
endif

deploy-local: emulator
	$(LOCAL_ENV) $(MOTO_VENV)/bin/python infra/local/deploy.py --template infra/template.yaml \
		--stack $(STACK) --emulator $(EMULATOR) --bin-dir $(BIN) --manifest $(STATE)/manifest.json \
		--url-port-base $(URL_PORT_BASE) \
		--param AllowPrivateTargets=true --param ValidatorMaxConcurrency=4 \
		--param ValidatorTimeout=$(VALIDATOR_TIMEOUT) --param ChunkVisibilityTimeout=$(CHUNK_VISIBILITY) \
		--param StallSeconds=3

runtime: deploy-local
	$(LOCAL_ENV) infra/local/service.sh start runtime $(STATE) $(LAMBDA_PORT) \
		$(BIN)/proxyharvest-local --manifest $(STATE)/manifest.json \
		--listen 127.0.0.1:$(LAMBDA_PORT) --log-dir $(STATE)/logs
	@{ for kv in $(LOCAL_ENV); do echo "export $$kv"; done; \
	   echo "export PROXYHARVEST_MANIFEST=$(abspath $(STATE))/manifest.json"; \
	   echo "export PROXYHARVEST_LOCAL_CONTROL=http://127.0.0.1:$(LAMBDA_PORT)"; } > $(STATE)/env

local-up: build runtime
	@echo "local stack up ($(EMULATOR)); environment: source $(STATE)/env"

local-down:
	-infra/local/service.sh stop runtime $(STATE)
	-infra/local/service.sh stop localstack $(STATE)
	-infra/local/service.sh stop moto $(STATE)

# The whole suite: unit, integration and end-to-end tests, then tear-down whatever happened.
local-test:
	$(MAKE) --no-print-directory lint-infra
	$(MAKE) --no-print-directory local-up || { $(MAKE) --no-print-directory local-down; exit 1; }
	rc=0; source $(STATE)/env && cargo test --workspace -- --include-ignored || rc=$$?; \
	$(MAKE) --no-print-directory local-down; exit $$rc

lint-infra: venv-moto
	$(MOTO_VENV)/bin/cfn-lint infra/template.yaml

run: local-up
	source $(STATE)/env && $(BIN)/proxyharvest run --stack-manifest $(STATE)/manifest.json

# One job through the real pipeline against a loopback farm of every kind of proxy, no network.
demo: local-up
	infra/local/demo.sh $(STATE)/env $(BIN)

deploy:
	@echo "Deploying to a real AWS account (needs sam, cargo-lambda and credentials):"
	sam build --template-file infra/template.yaml --beta-features
	sam deploy --guided

# The checking engine against a loopback farm in a child process; figures in docs/benchmarks.md.
# BENCH_ARGS: e.g. --quick, --proxies N, --concurrency N.
bench:
	cargo run --release -p proxyharvest-tests --bin bench-engine -- $(BENCH_ARGS)

# ---- the pipeline benchmark and the soak test (figures in docs/benchmarks.md) -------------------
# Each runs against a stack of its own (state and ports apart from local-test's, so both can be up
# at once): it brings the stack up, runs, and takes it down at the end, also on failure or Ctrl-C.
# STATE, MOTO_PORT, LAMBDA_PORT and URL_PORT_BASE given to make override the defaults below.
#   make bench-pipeline BENCH_PIPELINE_ARGS="--proxies 1000"     (default: 10,000 proxies)
#   make soak SOAK_ARGS="--proxies 1000 --jobs 2"                 (default: 3 jobs of 10,000)
.PHONY: soak
pipeline_given = $(if $(filter command line environment,$(origin $(1))),$($(1)),$(2))
PIPELINE_STATE := $(call pipeline_given,STATE,.local/bench)
PIPELINE_STACK := STATE=$(PIPELINE_STATE) MOTO_PORT=$(call pipeline_given,MOTO_PORT,6599) \
	LAMBDA_PORT=$(call pipeline_given,LAMBDA_PORT,9701) URL_PORT_BASE=$(call pipeline_given,URL_PORT_BASE,9801)
# $(call on_pipeline_stack,COMMAND): COMMAND with the stack's environment, between up and down.
on_pipeline_stack = trap '$(MAKE) --no-print-directory local-down $(PIPELINE_STACK)' EXIT; \
	$(MAKE) --no-print-directory local-up $(PIPELINE_STACK); \
	source $(PIPELINE_STATE)/env; \
	$(1)

bench-pipeline:
	$(call on_pipeline_stack,cargo run $(CARGO_PROFILE_FLAG) -p proxyharvest-tests --bin bench-pipeline -- $(BENCH_PIPELINE_ARGS))

soak:
	$(call on_pipeline_stack,cargo run $(CARGO_PROFILE_FLAG) -p proxyharvest-tests --bin soak -- $(SOAK_ARGS))
