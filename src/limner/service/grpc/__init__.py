"""The Open Inference gRPC service (``GRPCInferenceService``), started by ``limner serve
--grpc-port``. :mod:`limner.service.grpc.server` is imported only when it runs: ``import
limner`` and the HTTP service never load grpcio.

The messages and stubs are generated from the protocol's published ``grpc_predict_v2.proto``
into :mod:`limner.protocol` (``scripts/gen_grpc.sh``, ``make grpc``), which the calling side
(:mod:`limner.models.remote_grpc`) shares.
"""
