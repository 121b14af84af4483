# The two commands a newcomer needs: `make run` and `make test`.
# Both install whatever is missing first (scripts/bootstrap.sh), then reuse it.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
export WRANGLER_SEND_METRICS := false
export CLOUDFLARE_CF_FETCH_ENABLED := false

.PHONY: run test bootstrap build unit e2e clients deploy-check bench

## Start the worker (wrangler dev, local workerd) and the bridge; print a demo key and curl.
run: build
	python3 scripts/run.py

## Unit tests of every crate, the end-to-end suite against the real stack, the references' own client
## code against it, deployment checks.
test: build unit e2e clients deploy-check

bootstrap:
	bash scripts/bootstrap.sh

build: bootstrap
	bash scripts/build-worker.sh
	cargo build --release --locked -p wagate-bridge -p wagate-cli

unit:
	cargo test --workspace

e2e:
	.venv/bin/pytest tests/e2e

# The curl, Node, PHP and Python snippets of both API references, read from them at test time.
clients:
	.venv/bin/pytest tests/clients

deploy-check:
	bash scripts/check-deploy.sh

## Benchmarks on the local stack; results go to docs/BENCHMARKS.md.
bench: build
	.venv/bin/python scripts/bench.py accept
	.venv/bin/python scripts/bench.py otp
	.venv/bin/python scripts/bench.py memory
	.venv/bin/python scripts/bench.py webhooks
	.venv/bin/python scripts/bench.py campaigns
	.venv/bin/python scripts/bench.py auth
