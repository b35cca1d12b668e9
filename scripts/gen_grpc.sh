#!/bin/sh
# Regenerate limner's gRPC modules from the Open Inference protocol's grpc_predict_v2.proto
# (KServe's open-inference-protocol, specification/protocol/open_inference_grpc.proto).
# The messages go into a private descriptor pool, not protobuf's default one, so limner's copy
# never clashes with tritonclient's or kserve's copy of the same `inference.*` names when they
# share a process; the wire names (package `inference`) are unchanged.
set -eu
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/../src/limner/protocol"
"$PYTHON" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. grpc_predict_v2.proto
sed -i 's/_descriptor_pool\.Default()/_descriptor_pool.DescriptorPool()/' grpc_predict_v2_pb2.py
sed -i 's/^import grpc_predict_v2_pb2 as/from limner.protocol import grpc_predict_v2_pb2 as/' \
  grpc_predict_v2_pb2_grpc.py
