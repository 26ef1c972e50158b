# distillvq: `make demo` runs the main job on the embedded data, `make test`
# runs every test. Both install the Debian packages they need when missing.
SHELL := /bin/bash
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
DEB_PKGS := libfaiss-dev libopenblas-dev python3-faiss python3-numpy
BIN := bin/distillvq
DATA := testdata/glove20k

.PHONY: all deps build beam demo test lint fuzz race parity bench clean

all: build

# Install the Debian packages that are missing (needs root, as on the dev
# and CI machines).
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

build: deps
	$(GO) build -o $(BIN) ./cli/distillvq

# distillvq-beam: distillvq whose build also runs on Apache Beam
# (build --runner prism|dataflow|flink|spark|universal). A command of its
# own, so that distillvq does not link Beam's modules.
beam: deps
	$(GO) build -o bin/distillvq-beam ./cli/distillvq-beam

# The main job on the embedded GloVe set: an IVFPQ index trained by
# Distill-VQ from the training query words, FAISS's own training of the same
# index beside it (--compare), and their recall and speed against exact
# search on held-out words, as a table, Markdown, JSON and a plot.
demo: build
	@mkdir -p out
	$(BIN) build --docs $(DATA)/docs.npy --queries $(DATA)/train-queries.npy --train distill \
		--index ivfpq --nlist 128 --m 20 --metric ip -o out/glove20k-distill.faiss \
		--compare --eval-queries $(DATA)/queries.npy --eval-nprobe 1,2,4,8,16,32,auto --eval-target-recall 0.6 \
		--eval-min-time 1s --eval-markdown out/glove20k-eval.md --eval-json out/glove20k-eval.json --eval-plot out/glove20k-eval.png
	@echo "Distill-VQ index written to $(abspath out/glove20k-distill.faiss) (load it with faiss.read_index);"
	@echo "FAISS's training of the same index: $(abspath out/glove20k-distill-faiss.faiss); report: out/glove20k-eval.{md,json,png}"

# Tests that build the binary call `go` by name: put this Go first on PATH.
test: deps
	PATH="$(dir $(GO)):$$PATH" DISTILLVQ_REQUIRE_PYTHON=1 $(GO) test -count=1 -timeout 60m ./...
	$(MAKE) lint fuzz

# staticcheck at the version the module proxy serves (staticcheck.conf
# keeps the capitalised "M ..." error strings).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# The k-means-against-FAISS recall matrix of the README over three seeds
# (make test runs one): GloVe 20k and siftsmall, IVFPQ and IVFFlat, ip and l2.
parity: deps
	DISTILLVQ_PARITY_SEEDS=3 $(GO) test -count=1 -timeout 60m -run TestKMeansMatchesFAISSRecall -v ./distill/build/

# Each parser's fuzzer for a bounded number of executions, about 15 s each
# here (make test runs them; a finding fails the run and is saved under
# faissio/testdata/fuzz). Counts rather than durations: a duration that
# expires while the fuzzer minimises a new input fails with "context
# deadline exceeded", a finding of nothing.
FUZZ := FuzzReadIndex:300000 FuzzReadNpy:100000 FuzzReadFvecs:60000 FuzzReadQrels:200000
fuzz:
	for fc in $(FUZZ); do f=$${fc%%:*}; n=$${fc##*:}; \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $${n}x -fuzzminimizetime 200x ./faissio/ || exit 1; \
	done

# The packages' tests under the race detector, and the CLI's in-process
# ones that run goroutines (ground truth blocks, eval, checkpoint, memory);
# the CLI's subprocess tests run binaries built without -race.
race: deps
	$(GO) test -count=1 -race ./cgo/ ./faissio/ ./distill/ ./distill/eval/
	$(GO) test -count=1 -race -run 'TestPlanMemory|TestSampleIndices|Example' ./distill/build/
	PATH="$(dir $(GO)):$$PATH" $(GO) test -count=1 -race -run 'TestEvalMetricNote|TestEvalSVGAndErrors|TestBadInputFailsCleanly|TestDistillOnSampleWithinMemory|TestLibraryErrorsAreTheCLIs' ./cli/

# Recall, speed and memory against FAISS in the same run; writes
# out/bench.md and out/bench.json (machine, data, parameters, figures and
# issue 6's targets). Sections:
#   glove20k   the embedded set
#   siftsmall  ../shared/data/siftsmall, when present
#   glove100k  GloVe 100k and its cosine copy (converted from the npm package
#              by testdata/glove.py)
#   syn512     30k x 512 (testdata/synthetic.py): issue 15's high-dimensional
#              shape, distilled and FAISS IVFPQ / OPQ+IVFPQ, whole-build ratios
#   glove341k  every GloVe word (testdata/glove.py --all): IVF k-means, PQ
#              training and encode/add of ours against FAISS's
#              (testdata/phase_times.py, OMP 1 with BLAS 1 and with BLAS 2,
#              fastest per phase), FAISS's whole build through cgo, the
#              distillation per epoch, recall, peak RSS of each process
#   large      make bench LARGE=1: 1M x 768 float16 vectors
#              (testdata/synthetic.py, 1.5 GB) built within --max-memory 3GiB
#   distributed  make bench DIST=1: 10M x 96 float16 vectors in shards of 1M
#              (testdata/synthetic.py, 1.9 GB): build against distillvq-beam
#              on Prism, a worker's add, merge at 1M and 10M, recall
# Only some sections, e.g. to rerun the GloVe-341k comparison alone (10-20
# minutes here), with an already converted folder:
#   make bench ONLY=glove341k
#   make bench ONLY=glove341k GLOVE341K=/work/data/glove341k ROUNDS=2
# (ONLY is comma-separated; ROUNDS repeats the glove341k phase timings, FAISS
# and ours alternating, and keeps the fastest of each; BENCH_OUT=dir writes
# the report elsewhere than out/.) Data sets are converted only when missing
# and only for the sections that run.
GLOVE100K := out/data/glove100k
GLOVE341K := out/data/glove341k
SYN512 := out/data/syn30k512
SYN1M := out/data/syn1m768
SYN10M := out/data/syn10m96
BENCH_OUT := out
bench: deps
	@mkdir -p $(BENCH_OUT)
	@want() { [ -z "$(ONLY)" ] || [[ ",$(ONLY)," == *",$$1,"* ]]; }; \
	if want glove100k && [ ! -f $(GLOVE100K)/docs.npy ]; then \
		/usr/bin/python3 testdata/glove.py --docs 100000 --train-queries 10000 \
			--queries 1000 --ranks 0:341479 --dtype float32 --out $(GLOVE100K) || exit 1; \
	fi; \
	if want syn512 && [ ! -f $(SYN512)/queries.npy ]; then \
		/usr/bin/python3 testdata/synthetic.py --n 30000 --d 512 --out $(SYN512) || exit 1; \
	fi; \
	if want glove341k && [ ! -f $(GLOVE341K)/docs.npy ]; then \
		/usr/bin/python3 testdata/glove.py --all --queries 1000 --out $(GLOVE341K) || exit 1; \
	fi; \
	if [ -n "$(LARGE)" ] && want large && [ ! -d $(SYN1M)/docs ]; then \
		/usr/bin/python3 testdata/synthetic.py --out $(SYN1M) || exit 1; \
	fi; \
	if [ -n "$(DIST)" ] && want distributed && [ ! -f $(SYN10M)/queries.npy ]; then \
		/usr/bin/python3 testdata/synthetic.py --n 10000000 --d 96 --queries 1000 \
			--shard 1000000 --out $(SYN10M) || exit 1; \
	fi
	PATH="$(dir $(GO)):$$PATH" DISTILLVQ_BENCH=1 DISTILLVQ_BENCH_OUT=$(abspath $(BENCH_OUT)) \
		DISTILLVQ_BENCH_GLOVE=$(abspath $(GLOVE100K)) DISTILLVQ_BENCH_GLOVE341K=$(abspath $(GLOVE341K)) \
		DISTILLVQ_BENCH_SYN512=$(abspath $(SYN512)) \
		$(if $(LARGE),DISTILLVQ_BENCH_LARGE=$(abspath $(SYN1M))) $(if $(DIST),DISTILLVQ_BENCH_DIST=$(abspath $(SYN10M))) \
		$(if $(ONLY),DISTILLVQ_BENCH_ONLY=$(ONLY)) \
		$(if $(ROUNDS),DISTILLVQ_BENCH_ROUNDS=$(ROUNDS)) \
		$(GO) test -count=1 -timeout 300m -run TestBenchReport -v ./cli/

clean:
	rm -rf bin out
