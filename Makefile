# twofa developer tasks (GNU make). Recipes are tab-indented.
#
#   make run       local dev server (infra/local, dev profile); PORT=8080 make run to change port 3000
#   make test      fmt + clippy + the whole test suite against a local moto (infra/scripts/test.sh)
#   make fuzz      cargo-fuzz (libFuzzer) on every target, 10 min each (infra/scripts/fuzz.sh)
#   make bench     release builds, then every performance figure as a ratio to its baseline (infra/scripts/bench.sh)
#   make build     build the workspace with the AWS backends
#   make lambda    release builds of the seven Lambda binaries (plain cargo)
#   make lint      rustfmt check + clippy, warnings are errors
#   make moto-up / moto-down   start / stop the local moto server (infra/scripts/moto.sh)
#
# Deploying: the Lambda artefacts for template.yaml are built by cargo-lambda, which
# `sam build` runs for each function (BuildMethod: rust-cargolambda), equivalent to
#   cargo lambda build --release --arm64
# then `sam deploy --guided`. `make lambda` only checks that the binaries build here.

SHELL := /bin/bash
CARGO ?= cargo
MOTO := infra/scripts/moto.sh

.PHONY: all run test bench fuzz build lambda lint fmt moto-up moto-down moto-env

all: build

run:
	$(CARGO) run -p twofa-local

test:
	bash infra/scripts/test.sh

bench:
	bash infra/scripts/bench.sh

fuzz:
	bash infra/scripts/fuzz.sh

build:
	$(CARGO) build --workspace --features twofa/aws

lambda:
	$(CARGO) build --release -p twofa-otp -p twofa-limits -p twofa-records -p twofa-workflows -p twofa-workflow-step -p twofa-callbacks -p twofa-receipts

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
