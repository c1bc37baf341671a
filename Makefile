# The README's commands. `make test` is what CI runs (.ci/run).

CARGO ?= cargo

.PHONY: test devnet bench bench-max deps fmt-check clippy unit vectors deploy-check

## Install missing system packages, then fmt check, clippy and every test.
test: deps fmt-check clippy unit vectors deploy-check

## A local 4-validator network on 127.0.0.1 until Ctrl-C. State is kept in
## ./.devnet, so running it again resumes the chain; `make devnet ARGS=--reset`
## starts a new one.
devnet: deps
	$(CARGO) run --locked -q -p chatpay-node --bin chatpay-node -- devnet $(ARGS)

## End-to-end benchmark: release validators with RocksDB on 127.0.0.1 under
## the load generator (RATE, DURATION, VALIDATORS, ACCOUNTS, MEMO).
bench: deps
	./tests/bench.sh

## The highest offered rate that commits >= 99% with p99 finality <= 1 s.
bench-max: deps
	MAX=1 DURATION=$${DURATION:-10} ./tests/bench.sh

## System packages a fresh Debian/Ubuntu machine lacks (only when missing).
deps:
	@./.ci/install-deps.sh

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

## Re-check the signing test vectors with an independent implementation.
vectors:
	python3 proto/testdata/check_vectors.py

## Parse deploy/ (compose, Kubernetes, systemd, Dockerfile) and check what
## operators rely on.
deploy-check:
	python3 deploy/check.py
