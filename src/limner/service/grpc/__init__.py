"""The Open Inference gRPC service (``GRPCInferenceService``), started by ``limner serve
--grpc-port``. :mod:`limner.service.grpc.server` is imported only when it runs: ``import
limner`` and the HTTP service never load grpcio or these modules.

``grpc_predict_v2.proto`` is the protocol's published definition; ``grpc_predict_v2_pb2*.py``
are generated from it by ``scripts/gen_grpc.sh`` (``make grpc``) into a private descriptor
pool, so they never clash with other copies of the ``inference.*`` messages (tritonclient,
kserve) in the same process.
"""
