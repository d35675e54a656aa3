"""schemathesis hooks: how to send a tus chunk (application/offset+octet-stream)."""
import schemathesis


@schemathesis.serializer("application/offset+octet-stream")
def tus_chunk(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return str(value).encode()
