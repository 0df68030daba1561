#!/usr/bin/python3
"""Training and encoding speed: gst-cbir against the same networks in
PyTorch on the CPU, side by side in one run.

  /usr/bin/python3 tests/bench/bench-train.py [--cbir-train build/src/tools/cbir-train]
      [--data data/mnist/gallery-images.idx3-ubyte] [--threads 2]

Figures (per network: keras-dae and sicara):
  - training images/s at batch 128 (denoising, BCE, the preset's optimiser);
  - encoder latency at batch 1 (us/image), PyTorch with OpenBLAS and with
    oneDNN (torch.utils.mkldnn.to_mkldnn);
  - encoder throughput at batch 256 (images/s).
Each side runs --repeat times (alternating) and keeps its best figure.
Ratios: training ours/PyTorch (target >= 1), batch-1 latency
PyTorch(best)/ours (target >= 3), batch-256 ours/PyTorch(best).

PyTorch comes from Debian's python3-torch (installed with apt-get when
missing, if we can). It runs with LD_LIBRARY_PATH pointing at OpenBLAS
(Debian's default libblas is the slow reference BLAS) and 2 threads.
"""
import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import time

OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def ensure_env():
    """Re-executes with OpenBLAS first on the library path."""
    if os.path.isdir(OPENBLAS_DIR) and \
            OPENBLAS_DIR not in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = OPENBLAS_DIR + (
            ":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def ensure_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        pass
    print("bench-train: python3-torch is missing; installing it with apt-get",
          file=sys.stderr)
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "python3-torch"]
    if os.geteuid() != 0:
        if shutil.which("sudo"):
            cmd = ["sudo", "-n"] + cmd
        else:
            print("bench-train: not root and no sudo: cannot install "
                  "python3-torch; PyTorch columns skipped", file=sys.stderr)
            return False
    r = subprocess.run(cmd)
    if r.returncode != 0:
        print("bench-train: apt-get install python3-torch failed; PyTorch "
              "columns skipped", file=sys.stderr)
        return False
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        print("bench-train: python3-torch installed but does not import; "
              "PyTorch columns skipped", file=sys.stderr)
        return False


def load_idx_images(path):
    op = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with op(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 0x803:
        raise SystemExit(f"{path}: not an idx3-ubyte image file")
    return data[16:16 + n * rows * cols], n


# ---------------------------------------------------------------- PyTorch

def torch_nets(torch):
    nn = torch.nn

    def keras_dae():
        enc = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        dec = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(32, 1, 3, padding=1))      # sigmoid fused in the loss
        return enc, dec, lambda p: torch.optim.Adam(p, lr=1e-3, eps=1e-7)

    def sicara():
        enc = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True))
        dec = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(8, 16, 3, padding=0), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(16, 1, 3, padding=1))
        return enc, dec, lambda p: torch.optim.Adadelta(p, lr=1.0, rho=0.95, eps=1e-7)

    return {"keras-dae": keras_dae, "sicara": sicara}


def torch_bench(torch, name, make, images, n_img, batches, warm=3):
    import torch.utils.mkldnn as mkldnn
    torch.manual_seed(0)
    enc, dec, make_opt = make()
    model = torch.nn.Sequential(enc, dec)
    opt = make_opt(model.parameters())
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x_all = torch.frombuffer(bytearray(images), dtype=torch.uint8)[:n_img * 784]
    x_all = x_all.reshape(n_img, 1, 28, 28).float() / 255.0
    bs = 128
    res = {}

    def batch(i):
        j = (i * bs) % max(n_img - bs, 1)
        clean = x_all[j:j + bs]
        noisy = (clean + 0.5 * torch.randn_like(clean)).clamp_(0, 1)
        return noisy, clean

    model.train()
    for i in range(warm + batches):
        if i == warm:
            t0 = time.perf_counter()
        noisy, clean = batch(i)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(noisy), clean)
        loss.backward()
        opt.step()
    res["train_images_per_s"] = batches * bs / (time.perf_counter() - t0)

    enc.eval()
    with torch.no_grad():
        one = [x_all[i:i + 1].contiguous() for i in range(256)]
        b256 = x_all[:256].contiguous()

        def lat(f, xs, reps=2000):
            for i in range(200):
                f(xs[i % len(xs)])
            t0 = time.perf_counter()
            for i in range(reps):
                f(xs[i % len(xs)])
            return (time.perf_counter() - t0) / reps * 1e6

        def thr(f, x, reps=20):
            f(x)
            t0 = time.perf_counter()
            for _ in range(reps):
                f(x)
            return reps * x.shape[0] / (time.perf_counter() - t0)

        res["encode_b1_us_openblas"] = lat(enc, one)
        res["encode_b256_ips_openblas"] = thr(enc, b256)
        menc = mkldnn.to_mkldnn(enc)

        def fm(x):
            return menc(x.to_mkldnn()).to_dense()
        res["encode_b1_us_onednn"] = lat(fm, one)
        res["encode_b256_ips_onednn"] = thr(fm, b256)
    return res


# ---------------------------------------------------------------- ours

def find_cbir_train(arg):
    if arg:
        return arg
    for b in ("build", "build-model"):
        p = os.path.join(ROOT, b, "src", "tools", "cbir-train")
        if os.access(p, os.X_OK):
            return p
    raise SystemExit("bench-train: cbir-train not found; pass --cbir-train")


def ours_bench(exe, preset, data, threads, batches):
    cmd = [exe, "--benchmark", "--preset", preset, "--threads", str(threads),
           "--batch-size", "128", "--bench-batches", str(batches)]
    if data:
        cmd += ["--data", data]
    else:
        raise SystemExit("bench-train: --data is required")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ensure_env()
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cbir-train")
    ap.add_argument("--data", default=None,
                    help="IDX images (default: data/mnist/gallery-images.idx3-ubyte, "
                         "else the test fixture)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=30,
                    help="timed training batches (after 3 warm-up batches)")
    ap.add_argument("--nets", default="keras-dae,sicara")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per side, alternating; the best figure of each "
                         "is kept (damps noise from other load)")
    a = ap.parse_args()

    data = a.data
    if not data:
        for p in (os.path.join(ROOT, "data/mnist/gallery-images.idx3-ubyte"),
                  os.path.join(ROOT, "tests/data/mnist-64-images.idx3-ubyte.gz")):
            if os.path.exists(p):
                data = p
                break
    exe = find_cbir_train(a.cbir_train)
    images, n_img = load_idx_images(data)
    have_torch = ensure_torch()
    if have_torch:
        import torch
        torch.set_num_threads(a.threads)
        nets = torch_nets(torch)
        print(f"PyTorch {torch.__version__}, {a.threads} threads, "
              f"LD_LIBRARY_PATH={os.environ.get('LD_LIBRARY_PATH', '')}")
    print(f"data: {data} ({n_img} images); ours: {exe}")
    print("load average at start: %.2f %.2f %.2f (figures are only comparable "
          "on an otherwise idle machine)" % os.getloadavg())

    def best(runs):
        out = {}
        for r in runs:
            for k, v in r.items():
                if not isinstance(v, float):
                    out[k] = v
                elif "_us" in k:
                    out[k] = min(out.get(k, v), v)
                else:
                    out[k] = max(out.get(k, v), v)
        return out

    rows = []
    for name in a.nets.split(","):
        o_runs, t_runs = [], []
        for _ in range(max(a.repeat, 1)):
            o_runs.append(ours_bench(exe, name, data, a.threads, a.batches))
            if have_torch:
                t_runs.append(torch_bench(torch, name, nets[name], images,
                                          n_img, a.batches))
        rows.append((name, best(o_runs), best(t_runs)))

    def f(v, fmt="{:.0f}"):
        return fmt.format(v) if v is not None else "-"

    print()
    print(f"{'network':<10} {'metric':<28} {'PyTorch OpenBLAS':>16} "
          f"{'PyTorch oneDNN':>15} {'gst-cbir':>10} {'ratio':>7}")
    for name, o, t in rows:
        tr = t.get("train_images_per_s")
        print(f"{name:<10} {'train img/s (batch 128)':<28} {f(tr):>16} {'':>15} "
              f"{f(o['train_images_per_s']):>10} "
              f"{f(o['train_images_per_s'] / tr if tr else None, '{:.2f}'):>7}")
        b1 = [t.get("encode_b1_us_openblas"), t.get("encode_b1_us_onednn")]
        best = min(v for v in b1 if v) if any(b1) else None
        print(f"{'':<10} {'encode us/image (batch 1)':<28} {f(b1[0], '{:.1f}'):>16} "
              f"{f(b1[1], '{:.1f}'):>15} {f(o['encode_b1_us'], '{:.1f}'):>10} "
              f"{f(best / o['encode_b1_us'] if best else None, '{:.2f}'):>7}")
        b256 = [t.get("encode_b256_ips_openblas"), t.get("encode_b256_ips_onednn")]
        bestt = max(v for v in b256 if v) if any(b256) else None
        print(f"{'':<10} {'encode img/s (batch 256)':<28} {f(b256[0]):>16} "
              f"{f(b256[1]):>15} {f(o['encode_b256_images_per_s']):>10} "
              f"{f(o['encode_b256_images_per_s'] / bestt if bestt else None, '{:.2f}'):>7}")
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    print("\nratio: training ours/PyTorch; batch 1 best-PyTorch-latency/ours; "
          "batch 256 ours/best-PyTorch (higher is better for us)")


if __name__ == "__main__":
    main()
