"""``limner kserve-explainer``: serve limner as the explainer of a KServe InferenceService."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from limner.cli.common import err_console
from limner.cli.model_options import (
    InputSizeOption,
    LabelsOption,
    LayoutOption,
    MeanOption,
    MetadataOption,
    OutputOption,
    ScaleOption,
    StdOption,
)
from limner.imaging.decode import DEFAULT_MAX_PIXELS


def register(app: typer.Typer) -> None:
    """Add ``kserve-explainer`` to the CLI."""
    app.command("kserve-explainer")(kserve_explainer_command)


def kserve_explainer_command(
    predictor_host: Annotated[
        str | None,
        typer.Option(
            "--predictor-host",
            "--predictor_host",
            help="HOST[:PORT] of the predictor (KServe passes it); env LIMNER_PREDICTOR_HOST.",
        ),
    ] = None,
    model_name: Annotated[
        str,
        typer.Option(
            "--model-name", "--model_name", help="The name KServe routes :explain calls under."
        ),
    ] = "model",
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            "--predictor-protocol",
            "--predictor_protocol",
            help="How the predictor is reached: v2 (Open Inference over HTTP) | grpc-v2.",
        ),
    ] = "v2",
    predictor_model: Annotated[
        str | None,
        typer.Option(help="The model's name on the predictor (default: --model-name)."),
    ] = None,
    use_ssl: Annotated[
        bool, typer.Option("--use-ssl", help="Reach the predictor over TLS.")
    ] = False,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[
        int,
        typer.Option("--port", "--http-port", "--http_port", min=0, max=65535, help="Port."),
    ] = 8080,
    metadata: MetadataOption = None,
    labels: LabelsOption = None,
    input_size: InputSizeOption = None,
    layout: LayoutOption = None,
    scale: ScaleOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    output: OutputOption = None,
    header: Annotated[
        list[str] | None,
        typer.Option(help="Header sent to the predictor, 'Name: value' (repeatable)."),
    ] = None,
    method: Annotated[
        str, typer.Option(help="Default method: kernelshap | lime | occlusion | rise.")
    ] = "kernelshap",
    samples: Annotated[
        int | None, typer.Option(help="Default fixed budget of evaluations.")
    ] = None,
    max_samples: Annotated[int | None, typer.Option(help="Default adaptive budget.")] = None,
    segmentation: Annotated[str | None, typer.Option(help="Default segmentation.")] = None,
    segments: Annotated[int | None, typer.Option(help="Default number of regions.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Default baseline.")] = None,
    panes: Annotated[
        str,
        typer.Option(
            help="Panes in the answer: inline (data URLs) | none | store (files under "
            "--pane-dir, linked from GET /v1/models/NAME/panes/...)."
        ),
    ] = "inline",
    pane_dir: Annotated[Path | None, typer.Option(help="Where --panes store writes.")] = None,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body accepted.")] = 16
    * 1024
    * 1024,
    max_instances: Annotated[int, typer.Option(min=1, help="Most images a request.")] = 8,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more pixels than this.")
    ] = DEFAULT_MAX_PIXELS,
    sample_limit: Annotated[
        int, typer.Option(min=8, help="Most model evaluations a request may ask for.")
    ] = 2000,
    segment_limit: Annotated[
        int, typer.Option(min=2, help="Most regions a request may ask for.")
    ] = 200,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds one predictor request may take in all.")
    ] = 60.0,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Explanations computed at once; the others wait.")
    ] = 2,
) -> None:
    """Serve KServe's explainer routes (POST /v1/models/NAME:explain), scoring through the
    predictor that --predictor-host names over Open Inference (v2 or grpc-v2)."""
    import uvicorn

    from limner.cli.model_options import model_hints, parse_headers
    from limner.cli.serve import listen_socket
    from limner.errors import InvalidInputError
    from limner.kserve import ExplainerConfig, create_explainer_app

    predictor_host = predictor_host or os.environ.get("LIMNER_PREDICTOR_HOST")
    if not predictor_host:
        raise InvalidInputError("give --predictor-host (or LIMNER_PREDICTOR_HOST)")
    hints = model_hints(
        metadata=metadata,
        labels=labels,
        input_size=input_size,
        layout=layout,
        scale=scale,
        mean=mean,
        std=std,
        output=output,
    )
    given: dict[str, Any] = {
        "method": method,
        "samples": samples,
        "max_samples": max_samples,
        "segmentation": segmentation,
        "segments": segments,
        "baseline": baseline,
    }
    from limner.kserve.payload import explain_settings

    config = ExplainerConfig(
        model_name=model_name,
        predictor_host=predictor_host,
        protocol=protocol,
        predictor_model=predictor_model,
        use_ssl=use_ssl,
        hints=hints,
        headers=parse_headers(header),
        panes=panes,
        pane_dir=pane_dir,
        max_body_bytes=max_body_bytes,
        max_instances=max_instances,
        max_pixels=max_pixels,
        max_samples=sample_limit,
        max_segments=segment_limit,
        timeout=timeout,
        concurrency=concurrency,
    )
    # the operator's defaults go through the same checks as a request's parameters
    defaults = explain_settings({k: v for k, v in given.items() if v is not None}, config)
    config = replace(config, defaults=defaults)
    sock = listen_socket(host, port, "limner kserve-explainer")
    err_console.print(
        f"limner explainer for {config.model_name} on http://{host}:{sock.getsockname()[1]}, "
        f"scoring through {config.predictor_url()}",
        highlight=False,
        soft_wrap=True,
    )
    server = uvicorn.Server(uvicorn.Config(create_explainer_app(config), log_level="warning"))
    server.run(sockets=[sock])
