"""The sidecar images: their size, and the time from start to SERVING inside them.

    make image && .venv/bin/python benches/bench_image.py [--runs N] [--nice -10]

Sizes come from the OCI archives `make image` exports (dist/): each layer compressed (what a registry
transfers) and uncompressed (what the node's disk holds). Start-up runs the image's own entrypoint and
command in a buildah container, N times per variant: `with-model` on the embedded default, `sidecar` with a
config file and the model mounted from the host, `sidecar-embedding` the same plus the image's on-device
embedding model (a second worker process to start). A poller inside the container starts the command and asks
the gRPC health service every 20 ms; start-to-SERVING is the time from spawning the command to the first
SERVING, which includes Python's start, loading the model and binding the listeners. Then SIGTERM, and the
time until the process has exited. Needs root and buildah (as `make image` does); without the archives it
says so and writes nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, command_line, free_port, machine, table, write_result

# Runs inside the container, with the image's Python: argv = address, then the command to start.
POLLER = r"""
import json, signal, subprocess, sys, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
address, command = sys.argv[1], sys.argv[2:]
# Reconnect quickly: the default backoff (1 s and up) would hide when the port opens.
options = [("grpc.initial_reconnect_backoff_ms", 10), ("grpc.min_reconnect_backoff_ms", 10),
           ("grpc.max_reconnect_backoff_ms", 20)]
started = time.monotonic()
proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open("/tmp/serve.log", "wb"))
with grpc.insecure_channel(address, options=options) as channel:
    stub = health_pb2_grpc.HealthStub(channel)
    while True:
        if proc.poll() is not None:
            sys.exit("exited before SERVING: " + open("/tmp/serve.log").read()[-2000:])
        try:
            if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == 1:
                break
        except grpc.RpcError:
            pass
        if time.monotonic() - started > 180:
            sys.exit("not SERVING after 180 s")
        time.sleep(0.02)
serving = time.monotonic() - started
proc.send_signal(signal.SIGTERM)
sent = time.monotonic()
code = proc.wait(timeout=60)
print(json.dumps({"serving_s": serving, "stop_s": time.monotonic() - sent, "exit": code}))
"""


@dataclass
class Images:
    buildah: list[str]
    archive: Path
    archive_with_model: Path


def image_settings() -> Images:
    """The names deploy/container/common.sh defines, so that the bench reads what `make image` wrote."""
    out = subprocess.run(
        [
            "bash",
            "-c",
            'source deploy/container/common.sh; printf "%s\\n" "$ARCHIVE" "$ARCHIVE_WITH_MODEL" '
            '"${BUILDAH[@]}"',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return Images(buildah=out[2:], archive=ROOT / out[0], archive_with_model=ROOT / out[1])


def layer_sizes(archive: Path) -> list[tuple[int, int]]:
    """(compressed, uncompressed) bytes of each layer of the archive's one image, base first."""
    with tarfile.open(archive) as tar:

        def member(name: str) -> IO[bytes]:
            file = tar.extractfile(name)
            assert file is not None, name
            return file

        def blob(digest: str) -> IO[bytes]:
            return member(f"blobs/{digest.replace(':', '/')}")

        index = json.load(member("index.json"))
        manifest = json.load(blob(index["manifests"][0]["digest"]))
        sizes = []
        for layer in manifest["layers"]:
            uncompressed = 0
            with gzip.open(blob(layer["digest"])) as stream:
                while chunk := stream.read(1 << 20):
                    uncompressed += len(chunk)
            sizes.append((layer["size"], uncompressed))
    return sizes


def mb(n: float) -> str:
    return f"{n / 1e6:.0f}"


def start_times(images: Images, variant: str, runs: int, model: Path, tmp: Path) -> list[dict[str, float]]:
    archive = images.archive_with_model if variant == "with-model" else images.archive
    ctr = subprocess.run(
        [
            *images.buildah,
            "from",
            "--quiet",
            "--name",
            f"tiergate-bench-{variant}-{os.getpid()}",
            f"oci-archive:{archive}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        config = json.loads(
            subprocess.run(
                [*images.buildah, "inspect", ctr], capture_output=True, text=True, check=True
            ).stdout
        )["OCIv1"]["config"]
        command = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
        results = []
        for _ in range(runs):
            grpc_port, http_port = free_port(), free_port()
            options = ["--env", "TINI_SUBREAPER=1"]
            if variant == "with-model":
                options += ["--env", f"TIERGATE_GRPC=127.0.0.1:{grpc_port}"]
                options += ["--env", f"TIERGATE_HTTP=127.0.0.1:{http_port}"]
            else:
                config_file = tmp / "tiergate.yaml"
                text = (
                    f'listen: {{grpc: "127.0.0.1:{grpc_port}", http: "127.0.0.1:{http_port}"}}\n'
                    f"models:\n  local: {{provider: llama_cpp, path: /models/{model.name}}}\n"
                    "routes:\n  default: {chain: [local]}\n"
                )
                if variant == "sidecar-embedding":
                    # The image's own embedding model beside the mounted GGUF: a second worker to load.
                    text = (
                        text.replace("routes:", "  local-embed: {provider: onnx, path: embedded}\nroutes:")
                        + "embedding_routes:\n  default: {chain: [local-embed]}\n"
                    )
                config_file.write_text(text)
                config_file.chmod(0o644)
                options += ["--volume", f"{config_file}:/etc/tiergate/tiergate.yaml:ro"]
                options += ["--volume", f"{model.parent}:/models:ro"]
            out = subprocess.run(
                [
                    *images.buildah,
                    "run",
                    "--isolation",
                    "chroot",
                    *options,
                    ctr,
                    "--",
                    "python",
                    "-c",
                    POLLER,
                    f"127.0.0.1:{grpc_port}",
                    *command,
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if out.returncode != 0:
                sys.exit(f"{variant}: {out.stdout}{out.stderr}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if result["exit"] != 0:
                sys.exit(f"{variant}: exit status {result['exit']} after SIGTERM")
            results.append(result)
    finally:
        subprocess.run([*images.buildah, "rm", ctr], capture_output=True, check=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7, help="starts per variant")
    parser.add_argument("--nice", type=int, default=0, help="os.nice() increment (e.g. -10; needs root)")
    args = parser.parse_args()
    images = image_settings()
    missing = [a for a in (images.archive, images.archive_with_model) if not a.exists()]
    if missing or os.geteuid() != 0:
        why = f"{missing[0].relative_to(ROOT)} is missing (run `make image`)" if missing else "needs root"
        print(f"bench_image: skipped, {why}; the recorded results are unchanged", file=sys.stderr)
        return
    if args.nice:
        os.nice(args.nice)
    head = ["# bench_image: the sidecar images' size and start-to-SERVING time", "", "## Machine", *machine()]

    size_rows = []
    for name, archive in (("sidecar (no model)", images.archive), ("with-model", images.archive_with_model)):
        layers = layer_sizes(archive)
        size_rows.append(
            [
                name,
                mb(sum(c for c, _ in layers)),
                mb(sum(u for _, u in layers)),
                " + ".join(mb(u) for _, u in layers),
            ]
        )

    model = Path(
        subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-m", "tiergate.embedded_model"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    time_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant, how in (
            ("with-model", "embedded default, model baked in"),
            ("sidecar", "config file and model mounted"),
            ("sidecar-embedding", "the same, plus the image's on-device embedding model"),
        ):
            runs = start_times(images, variant, args.runs, model, Path(tmp))
            serving = [r["serving_s"] for r in runs]
            stops = [r["stop_s"] for r in runs]
            time_rows.append(
                [
                    f"{variant} ({how})",
                    f"{statistics.median(serving):.2f}",
                    f"{min(serving):.2f}",
                    f"{max(serving):.2f}",
                    f"{statistics.median(stops):.2f}",
                    str(len(runs)),
                ]
            )

    lines = [
        *head,
        f"- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
        "## Command",
        "",
        "    make image",
        f"    {command_line()}",
        "",
        "## Image size (MB, 10^6 bytes)",
        "",
        *table(["image", "compressed (pull)", "uncompressed (disk)", "layers, uncompressed"], size_rows),
        "",
        "The layers: the debootstrapped Debian base, Python and the runtime packages, /opt/tiergate (the",
        "virtualenv with onnxruntime and tokenizers, and the on-device embedding model `make setup` built,",
        "24 MB, in the cache directory /opt/tiergate/model), and (with the model) the GGUF. A registry",
        "transfers the compressed size, a node stores the other.",
        "",
        "## Start to SERVING, and SIGTERM to exit (seconds)",
        "",
        *table(["variant", "SERVING median", "min", "max", "SIGTERM to exit (median)", "runs"], time_rows),
        "",
        "Each run is a fresh process in the image (buildah run, chroot isolation, on the host's network);",
        "the first run of a variant may find the model's file outside the page cache.",
    ]
    write_result("image", lines)


if __name__ == "__main__":
    main()
