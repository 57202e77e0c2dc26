# twofa developer tasks (GNU make). Recipes are tab-indented.
#
#   make run       local dev server (infra/local, dev profile); PORT=8080 make run to change port 3000
#   make test      fmt + clippy + the whole test suite against a local moto (infra/scripts/test.sh)
#   make fuzz      cargo-fuzz (libFuzzer) on every target, 10 min each (infra/scripts/fuzz.sh)
#   make bench     release builds, then every performance figure as a ratio to its baseline (infra/scripts/bench.sh)
#   make build     sam build: every function of template.yaml (cargo-lambda, release profile), ARCH=x86_64|arm64
#   make local-aws the whole API on sam local start-api (Lambda containers, AWS from moto); local-aws-down stops it
#   make test-sam  black-box API tests and a short make load against make local-aws, then stops
#                  all it started (needs Docker)
#   make test-browser  the console in headless Chromium (Playwright, axe-core) against a dev
#                  server of its own (infra/scripts/browser.sh; installs Debian's chromium
#                  when missing, as root or with sudo)
#   make load URL=… SID=… TOKEN=… NUMBERS=…  send+verify pairs with Locust against any deployment
#                  (USERS RAMP DURATION CODE WRONG_PERCENT PROCESSES REPORT; infra/scripts/load.sh)
#   make deploy    sam build + sam deploy (--guided the first time, writing samconfig.toml)
#   make validate  cfn-lint + sam validate --lint on template.yaml (also part of make test)
#   make check-build  debug build of the workspace with the AWS backends
#   make lambda    release builds of the Lambda binaries (plain cargo, no cargo-lambda)
#   make lint      rustfmt check + clippy, warnings are errors
#   make moto-up / moto-down   start / stop the local moto server (infra/scripts/moto.sh)
#
# aws-sam-cli, cargo-lambda and cfn-lint are installed pinned (infra/sam/requirements.txt) into
# .venv-sam by infra/scripts/sam.sh; moto into .venv by infra/scripts/moto.sh; Locust into
# .venv-load by infra/scripts/load.sh; Playwright, pytest and axe-playwright-python into
# .venv-browser by infra/scripts/browser.sh.

SHELL := /bin/bash
CARGO ?= cargo
MOTO := infra/scripts/moto.sh

SAM := infra/scripts/sam.sh
ARCH ?=

.PHONY: all run test bench fuzz build check-build lambda lint fmt moto-up moto-down moto-env \
	local-aws local-aws-down test-sam test-browser deploy validate load

all: check-build

run:
	$(CARGO) run -p twofa-local

test:
	bash infra/scripts/test.sh

bench:
	bash infra/scripts/bench.sh

fuzz:
	bash infra/scripts/fuzz.sh

build:
	ARCH=$(ARCH) bash $(SAM) build

check-build:
	$(CARGO) build --workspace --features twofa/aws

lambda:
	$(CARGO) build --release -p twofa-otp -p twofa-limits -p twofa-records -p twofa-workflows -p twofa-workflow-step -p twofa-callbacks -p twofa-receipts -p twofa-console -p twofa-factors

local-aws:
	ARCH=$(ARCH) bash $(SAM) up

local-aws-down:
	bash $(SAM) down

test-sam:
	ARCH=$(ARCH) bash infra/scripts/test-sam.sh

test-browser:
	bash infra/scripts/browser.sh run

# Command-line variables reach the script's environment (make exports them).
load:
	bash infra/scripts/load.sh run

deploy:
	ARCH=$(ARCH) bash $(SAM) deploy

validate:
	bash $(SAM) validate

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features twofa/aws -- -D warnings

fmt:
	$(CARGO) fmt --all

moto-up:
	bash $(MOTO) install
	bash $(MOTO) start
	@echo "# for the tests: eval \"\$$(bash $(MOTO) env)\""

moto-down:
	bash $(MOTO) stop

moto-env:
	@bash $(MOTO) env
