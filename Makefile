# The Compose workflow of the original prototype, plus the usual shortcuts.
IMAGE ?= burst:local
COMPOSE ?= docker-compose -f deploy/compose.yaml -p burst

.PHONY: build image up logs down test docs kind-up kind-e2e kind-down

build:
	cargo build --release

image: build
	deploy/image.sh target/release/burst $(IMAGE)

up: image
	BURST_IMAGE=$(IMAGE) $(COMPOSE) up -d
	@echo "controller on 127.0.0.1:$${BURST_PORT:-50051}: export BURST_CONTROLLER=http://127.0.0.1:$${BURST_PORT:-50051}"

logs:
	$(COMPOSE) logs -f

down:
	$(COMPOSE) down -v

test:
	cargo test --workspace

docs:
	cargo doc --workspace --no-deps

# burst on a local kind cluster (kind-config.yaml): build, load the image, install the chart; e2e also runs the
# example BurstCluster and BurstJobs. Needs docker, kind, kubectl and helm (.ci/install-helm gets the last two).
kind-up:
	deploy/kind.sh up

kind-e2e:
	deploy/kind.sh e2e

kind-down:
	deploy/kind.sh down
