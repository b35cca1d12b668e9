"""Clients nobody here wrote score through limner, read its errors, and their scorings explain:
tritonclient (HTTP binary and JSON, gRPC) and KServe's InferenceRESTClient / InferenceGRPCClient.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from interop_helpers import Server

CLIENTS = Path(__file__).with_name("clients.py")

CASES = {
    "triton_http_binary": {"client": "triton_http", "binary": True},
    "triton_http_json": {"client": "triton_http", "binary": False},
    "triton_grpc": {"client": "triton_grpc"},
    "kserve_rest": {"client": "kserve_rest"},
    "kserve_grpc": {"client": "kserve_grpc"},
}

#: What each client raises for a mistake, and the status it reports.
EXPECTED_ERRORS = {
    "triton_http": (
        "InferenceServerException",
        {"wrong_shape": "422", "unknown_model": "404", "no_key": "401"},
    ),
    "triton_grpc": (
        "InferenceServerException",
        {
            "wrong_shape": "StatusCode.INVALID_ARGUMENT",
            "unknown_model": "StatusCode.NOT_FOUND",
            "no_key": "StatusCode.UNAUTHENTICATED",
        },
    ),
    "kserve_rest": ("HTTPStatusError", {"wrong_shape": 422, "unknown_model": 404, "no_key": 401}),
    "kserve_grpc": (
        "AioRpcError",
        {
            "wrong_shape": "INVALID_ARGUMENT",
            "unknown_model": "NOT_FOUND",
            "no_key": "UNAUTHENTICATED",
        },
    ),
}

#: limner's own words for each mistake, which every client must pass on.
MESSAGES = {"wrong_shape": "[N, H, W, 3]", "unknown_model": "no model 'nope'", "no_key": "API key"}


def run_client(server: Server, case: str) -> dict:
    args = {
        **CASES[case],
        "http": server.http,
        "grpc": server.grpc,
        "key": server.key,
        "model": server.model,
        "photo": str(server.photo),
    }
    proc = subprocess.run(
        [sys.executable, str(CLIENTS), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def scored() -> dict[str, list[str]]:
    """Scoring ids each client got, explained in the last test."""
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_client_scores_and_reads_errors(server: Server, case: str, scored: dict) -> None:
    report = run_client(server, case)
    assert len(report["results"]) >= 2
    for result in report["results"]:
        assert result["top"] == "Egyptian cat", result
        assert result["argmax"] == 285 and result["classes"] == 1000
        assert len(result["scoring_ids"]) == 1 and result["scoring_ids"][0]
    scored[case] = [r["scoring_ids"][0] for r in report["results"]]
    kind, statuses = EXPECTED_ERRORS[CASES[case]["client"]]
    for mistake, status in statuses.items():
        err = report["errors"][mistake]
        assert err["type"] == kind, err
        assert err["status"] == status, err
        assert MESSAGES[mistake] in err["message"], err
        assert "Traceback" not in err["message"]


@pytest.mark.slow
def test_scorings_of_every_client_explain(server: Server, scored: dict) -> None:
    if len(scored) < len(CASES):
        pytest.skip("needs the scoring tests of this module first")
    with server.client() as client:
        for case, ids in scored.items():
            for scoring_id in ids:
                assert client.transactions.get(scoring_id)["label"] == "Egyptian cat", case
        # one explanation per client (explaining is the slow part)
        for case, ids in scored.items():
            explanation = client.explanations.create(ids[-1]).wait(timeout=240)
            assert explanation.status == "finished", (case, explanation.error)
            assert explanation.image("positive").startswith(b"\x89PNG")
            assert explanation.image("negative").startswith(b"\x89PNG")


def test_serve_refuses_a_taken_grpc_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "limner.cli.main", "serve", "--grpc-port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"limner: error: gRPC cannot listen on 127.0.0.1:{port} (Address already in use)"
    ]
