"""The gRPC port (TF Serving's 8500 beside REST's 8501), on the REST server's event loop.

Why grpc.aio on the same loop: requests from both ports meet in the same batchers without a
thread hop, and one drain gate covers both. The services: TF Serving's PredictionService and
ModelService (:mod:`.tfserving_grpc`) and the Open Inference Protocol's
GRPCInferenceService (:mod:`.openinference.grpc`). The message size limit is the REST
body limit, so both ports refuse the same requests (RESOURCE_EXHAUSTED here, 413 there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cellship.errors import UsageError

if TYPE_CHECKING:
    from cellship.serve.server import ModelServer


async def start_grpc(server: ModelServer, host: str, port: int) -> tuple[Any, int]:
    """Start the gRPC server on ``host:port`` (0: any free port); returns it and its port."""
    from cellship.errors import MissingDependency

    try:
        import grpc
    except ImportError:  # an image or venv made without it: REST (v1 and v2) still serves
        raise MissingDependency("gRPC is off: grpcio is not installed here (pip install "
                                "grpcio, then restart the server).") from None
    from cellship.serve.openinference.grpc import add_open_inference

    limit = server.config.max_body_bytes
    grpc_server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                           ("grpc.max_send_message_length", -1),
                                           ("grpc.so_reuseport", 0)])
    try:  # TF Serving's protos are optional: without them the v2 service still runs
        from cellship.serve.tfserving_grpc import add_tf_serving

        add_tf_serving(grpc_server, server)
    except MissingDependency as err:
        server._log(f"gRPC: serving the Open Inference Protocol only. {err}")
    add_open_inference(grpc_server, server)
    shown = f"[{host}]" if ":" in host else host
    try:
        bound = grpc_server.add_insecure_port(f"{shown}:{port}")
    except RuntimeError as err:
        raise UsageError(f"Cannot listen for gRPC on {host}:{port}: {err} (another server uses "
                         "it: pick another with --grpc-port, 0 for any free one, or -1 for "
                         "none).") from None
    if not bound:
        raise UsageError(f"Cannot listen for gRPC on {host}:{port}: the port is taken or the "
                         "address is not this machine's (pick another with --grpc-port).")
    await grpc_server.start()
    return grpc_server, bound
