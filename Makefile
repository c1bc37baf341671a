# The README's commands. `make test` is what CI runs (.ci/run).

CARGO ?= cargo

.PHONY: test devnet bench bench-max sim deps fmt-check clippy unit vectors deploy-check

## Install missing system packages, then fmt check, clippy and every test.
test: deps fmt-check clippy unit vectors deploy-check sim

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

## Seeded simulation: the regression seeds, then SEEDS seeds (default
## 200) of whole clusters under random faults. `SEED=N make sim` replays one
## run with its schedule and trace; `MUTATION=vote-twice make sim` breaks a
## safety rule and succeeds only if the checker catches it.
sim: deps
	$(CARGO) run --locked -q -p chatpay-tests --bin chatpay-sim -- $(if $(MUTATION),--mutation $(MUTATION))

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
