"""`limner explain` as users run it: a real subprocess, the real model."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from limner.samples import sample_photo

LIMNER = [sys.executable, "-m", "limner.cli.main"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIMNER, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def cat_jpg(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("img") / "cat.jpg"
    Image.fromarray(sample_photo("chelsea")).save(p, quality=92)
    return p


def test_explain_json_writes_panes_and_the_result(cat_jpg, tmp_path):
    out = tmp_path / "out"
    proc = run(
        "explain",
        str(cat_jpg),
        "--segmentation",
        "grid",
        "--segments",
        "12",
        "--samples",
        "128",
        "--top-k",
        "2",
        "--out",
        str(out),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (result,) = doc["results"]
    assert (result["width"], result["height"]) == (451, 300)
    assert result["segmentation"] == {"algorithm": "grid", "count": 12, "baseline": "blur"}
    assert len(result["explanations"]) == 2
    first = result["explanations"][0]
    assert first["label"] in ("Egyptian cat", "tabby", "tiger cat")
    assert sum(r["area"] for r in first["regions"]) == 451 * 300
    assert abs(sum(r["share"] for r in first["regions"]) - 100) < 0.1
    weights = [r["weight"] for r in first["regions"]]
    assert weights == sorted(weights, reverse=True)
    for kind in ("positive", "negative", "heatmap"):
        pane = Path(first["images"][kind])
        assert pane.exists()
        assert Image.open(pane).size == (451, 300)
    assert 0 <= first["deletion_auc"] <= 1 and 0 <= first["insertion_auc"] <= 1
    assert first["sufficient_regions"] and first["necessary_regions"]


def _bomb(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("case", ["corrupt", "empty", "bomb", "text", "missing"])
def test_bad_input_exits_2_with_one_line(case, cat_jpg, tmp_path):
    if case == "corrupt":
        path = tmp_path / "corrupt.jpg"
        path.write_bytes(cat_jpg.read_bytes()[:2000])
    elif case == "empty":
        path = tmp_path / "empty.png"
        path.write_bytes(b"")
    elif case == "bomb":
        path = _bomb(tmp_path / "bomb.png")
    elif case == "text":
        path = tmp_path / "notes.jpg"
        path.write_text("these are my notes, not a photo\n")
    else:
        path = tmp_path / "nowhere.jpg"
    proc = run("explain", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and str(path.name) in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["--method", "magic"],
        ["--segments", "1"],
        ["--samples", "many"],
        ["--class", "no such label"],
        ["--unknown-flag"],
    ],
)
def test_bad_usage_exits_2_with_one_line(args, cat_jpg, tmp_path):
    proc = run("explain", str(cat_jpg), "--out", str(tmp_path), *args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_tie_tolerance_out_of_range_is_refused_by_name(cat_jpg, tmp_path):
    proc = run("explain", str(cat_jpg), "--out", str(tmp_path), "--tie-tolerance", "1.5")
    assert proc.returncode == 2
    assert "tie_tolerance must be" in proc.stderr and "Traceback" not in proc.stderr


def _photo(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sample_photo(name)).save(path, quality=92)
    return path


FAST = ["--segmentation", "grid", "--segments", "4", "--method", "occlusion"]


def test_a_batch_keeps_every_result_and_reports_bad_files(tmp_path):
    a = _photo(tmp_path / "a" / "x.jpg", "chelsea")
    b = _photo(tmp_path / "b" / "x.jpg", "coffee")
    folder = tmp_path / "folder"
    _photo(folder / "2.png", "rocket")
    _photo(folder / "1.jpg", "astronaut")
    (folder / "notes.txt").write_text("not an image\n")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(a.read_bytes()[:1500])
    out = tmp_path / "out"
    proc = run("explain", str(a), str(bad), str(b), str(folder), "--out", str(out), *FAST, "--json")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.jpg" in lines[0] and "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    inputs = [r["input"] for r in doc["results"]]
    assert inputs == [str(a), str(b), str(folder / "1.jpg"), str(folder / "2.png")]
    assert [e["input"] for e in doc["errors"]] == [str(bad)]
    folders = {Path(r["explanations"][0]["images"]["positive"]).parent for r in doc["results"]}
    assert folders == {out / n / "occlusion" for n in ("x", "x-2", "1", "2")}
    for result in doc["results"]:
        saved = json.loads(
            (
                out
                / Path(result["explanations"][0]["images"]["positive"]).parent.relative_to(out)
                / "result.json"
            ).read_text()
        )
        assert (saved["width"], saved["height"]) == (result["width"], result["height"])
    # another method into the same --out leaves the first results in place
    again = run(
        "explain", str(a), "--out", str(out), *FAST[:4], "--method", "kernelshap", "--samples", "16"
    )
    assert again.returncode == 0, again.stderr
    assert (out / "x" / "kernelshap" / "result.json").exists()
    assert (
        json.loads((out / "x" / "occlusion" / "result.json").read_text())["method"] == "occlusion"
    )


def test_a_folder_without_images_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run("explain", str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no images" in lines[0]


def test_max_pixels_flag_and_its_error(cat_jpg, tmp_path):
    proc = run("explain", str(cat_jpg), "--max-pixels", "100000", "--out", str(tmp_path))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "cat.jpg" in line and "--max-pixels" in line and "0.1 megapixels" in line


def test_cuda_without_cuda_says_what_is_available(cat_jpg, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run("explain", str(cat_jpg), "--device", "cuda", "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "cuda" in line and "available here: cpu" in line and "Traceback" not in proc.stderr


def test_table_shows_fit_and_warnings(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.fromarray(sample_photo("chelsea")).resize((16, 16)).save(tiny)
    proc = run(
        "explain",
        str(tiny),
        "--method",
        "occlusion",
        "--segmentation",
        "grid",
        "--segments",
        "2",
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "R²" in proc.stdout
    assert "warning" in proc.stdout and "only 2 regions" in proc.stdout
    assert list((tmp_path / "out" / "tiny").rglob("*-regions.png"))


def test_a_folder_of_20_stays_readable_at_80_columns(tmp_path):
    """Twenty files under a long shared folder: every file name whole at 80 columns, each
    warning once per image (not once per class of a binary model), and the total wall time."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
    from sec_helpers import TINY_META, tiny_onnx

    model = tiny_onnx(tmp_path / "tiny.onnx")
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_META))
    folder = tmp_path / "data_binary_experiment" / "validation_images_of_the_second_round"
    folder.mkdir(parents=True)
    rng = __import__("numpy").random.default_rng(0)
    for i in range(20):
        pixels = rng.integers(0, 255, (24, 24, 3), dtype="uint8")
        Image.fromarray(pixels).save(folder / f"sample_{i:02d}.png")
    proc = subprocess.run(
        [
            *LIMNER,
            "explain",
            str(folder),
            "--model",
            str(model),
            "--metadata",
            str(tmp_path / "tiny.json"),
            "--segmentation",
            "grid",
            "--segments",
            "2",
            "--samples",
            "16",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "COLUMNS": "80"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for i in range(20):
        assert sum(f"sample_{i:02d}.png" in line for line in lines if "│" in line) >= 1
    warned = [line for line in lines if line.startswith("warning")]
    assert warned and len(warned) == len(set(warned))
    assert sum("sample_00.png" in w for w in warned) == 1
    assert "20 explained in" in proc.stdout
