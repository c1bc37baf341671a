# The README's commands. `make test` is what CI runs (.ci/run).

CARGO ?= cargo

# Simulated runs of `make sim`; `make test` runs fewer to stay well within
# CI's time (a clean build spends 15 of its minutes on RocksDB's C++).
SEEDS ?= 200
TEST_SEEDS ?= 100

.PHONY: test devnet bench bench-max bench-overload bench-rejoin microbench sim deps fmt-check clippy unit vectors deploy-check

## Install missing system packages, then fmt check, clippy and every test.
test: deps fmt-check clippy unit vectors deploy-check sim
test: SEEDS = $(TEST_SEEDS)

## A local 4-validator network on 127.0.0.1 until Ctrl-C. State is kept in
## ./.devnet, so running it again resumes the chain; `make devnet ARGS=--reset`
## starts a new one.
devnet: deps
	$(CARGO) run --locked -q -p chatpay-node --bin chatpay-node -- devnet $(ARGS)

## End-to-end benchmark: release validators with RocksDB on 127.0.0.1 under
## the load generator (RATE, DURATION, VALIDATORS, ACCOUNTS, MEMO; STOP=K
## kills K validators first, WARMUP=S leaves S seconds out of the latencies).
bench: deps
	./tests/bench.sh

## The highest offered rate that commits >= 99% with p99 finality <= 1 s.
bench-max: deps
	MAX=1 DURATION=$${DURATION:-10} ./tests/bench.sh

## 3x the rate bench-max found (or RATE) for 60 s from 2 000 accounts:
## every validator must keep answering, under RSS_BOUND_MIB of memory,
## refusing with reasons, and commit at least half the saturation rate.
bench-overload: deps
	OVERLOAD=1 ./tests/bench.sh

## A wiped validator rejoins a chain of TRANSFERS (200 000) committed
## transfers to NEW_ACCOUNTS (100 000) new accounts: by replay from
## genesis, then from a state snapshot, timed in one session (BIN= runs
## another build). Result in target/bench/rejoin.json.
bench-rejoin: deps
	@if [ -z "$(BIN)" ]; then $(CARGO) build --release --locked --bin chatpay-node --bin chatpay-loadgen; fi
	BIN=$${BIN:-target/release} python3 tests/bench_rejoin.py

## criterion micro-benchmarks: transfer signing bytes, tx id, signature
## check and wire decoding; block execution and commit (memory, RocksDB);
## a consensus round of four cores; mempool admission and batching with
## 20 000 pending. Reports in target/criterion.
microbench: deps
	$(CARGO) bench --locked -p chatpay-proto -p chatpay-node --bench transfer --bench node

## Seeded simulation: the regression seeds, then SEEDS seeds (200; 100 in
## `make test`) of whole clusters under random faults. `SEED=N make sim` replays one
## run with its schedule and trace; `MUTATION=vote-twice make sim` breaks a
## safety rule and succeeds only if the checker catches it.
sim: deps
	$(CARGO) run --locked -q -p chatpay-tests --bin chatpay-sim -- --seeds $(SEEDS) $(if $(MUTATION),--mutation $(MUTATION))

## System packages a fresh Debian/Ubuntu machine lacks (only when missing).
deps:
	@./.ci/install-deps.sh

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## cargo-nextest, where installed, runs test binaries side by side (about
## a third faster than cargo test on 2 cores); doctests need cargo test.
unit:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --workspace --locked --no-fail-fast && $(CARGO) test --workspace --locked --doc"; \
		$(CARGO) nextest run --workspace --locked --no-fail-fast && $(CARGO) test --workspace --locked --doc; \
	else \
		echo "$(CARGO) test --workspace --locked"; \
		$(CARGO) test --workspace --locked; \
	fi

## Re-check the signing test vectors with an independent implementation.
## The test vectors, checked by independent implementations: Python's
## standard library for transfers, addresses and proofs; coincurve and
## cryptography (installed into target/pydeps when missing) for memos.
PYDEPS := target/pydeps
vectors:
	python3 proto/testdata/check_vectors.py
	@PYTHONPATH=$(PYDEPS) python3 -c 'import coincurve, cryptography' 2>/dev/null || \
		python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target $(PYDEPS) \
			'coincurve>=20' 'cryptography>=42'
	PYTHONPATH=$(PYDEPS) python3 proto/testdata/check_memo_vectors.py

## Parse deploy/ (compose, Kubernetes, systemd, Dockerfile) and check what
## operators rely on.
deploy-check:
	python3 deploy/check.py
