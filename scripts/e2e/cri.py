#!/usr/bin/python3
"""Talk to containerd's CRI ImageService the way kubelet does.

usage: cri.py SOCKET pull REF      -> prints the image ref (digest) containerd returns
       cri.py SOCKET rm REF        -> RemoveImage (all tags/digests of that image)

Needs python3-grpcio only: the few protobuf messages involved are encoded by hand
(field numbers from k8s.io/cri-api runtime/v1 api.proto: PullImageRequest.image = 1,
ImageSpec.image = 1, PullImageResponse.image_ref = 1, RemoveImageRequest.image = 1),
so no protoc or generated code is needed at test time.
"""
import sys

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, payload):
    return varint((num << 3) | 2) + varint(len(payload)) + payload


def read_field1_string(buf):
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 2:
            ln, i = read_varint(buf, i)
            val = buf[i:i + ln]
            i += ln
            if num == 1:
                return val.decode()
        elif wt == 0:
            _, i = read_varint(buf, i)
        else:
            break
    return ""


def read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def call(channel, method, request):
    last = None
    for api in ("runtime.v1", "runtime.v1alpha2"):
        fn = channel.unary_unary("/%s.ImageService/%s" % (api, method),
                                 request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
        try:
            return fn(request, timeout=300)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            last = e
    raise last


def main():
    sock, verb, ref = sys.argv[1], sys.argv[2], sys.argv[3]
    image_spec = field_bytes(1, ref.encode())
    with grpc.insecure_channel("unix://" + sock) as ch:
        try:
            if verb == "pull":
                resp = call(ch, "PullImage", field_bytes(1, image_spec))
                print(read_field1_string(resp))
            elif verb == "rm":
                call(ch, "RemoveImage", field_bytes(1, image_spec))
            else:
                sys.exit("unknown verb " + verb)
        except grpc.RpcError as e:
            print("CRI %s %s failed: %s: %s" % (verb, ref, e.code().name, e.details()), file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
