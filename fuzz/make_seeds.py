#!/usr/bin/env python3
"""Writes the seed inputs of fuzz/corpus/ (run from the repository root).

fuzz_api seeds decode (see fuzz_api.c) into valid plans and stage calls for
every stage, selector and input dtype, so the fuzzer starts from calls the
library accepts and mutates from there. fuzz_npy seeds are small valid .npy
images of every dtype and header version."""
import os
import struct

def api_seed(stage, selector, dtype, n_tokens, block_idx, stride_exp, k_start, layout, hq_mult,
             head_idx, out_dtype, opt=0, fuzz_values=False):
    b = bytearray()
    b += bytes([0, 0, 0, hq_mult]) + struct.pack('<H', n_tokens - 1)
    b += bytes([head_idx, dtype, 1])                       # head_dim, dtype, layer_index -1
    b += struct.pack('<H', 0)                              # no raw config fields
    b += bytes([selector, block_idx, stride_exp, k_start, 1, 1, 178, 13, 230, 0, 0, 2, 6, 1])
    b += bytes([1, out_dtype])                             # use the config; out dtype
    for slot in range(7):
        fill = 1 if fuzz_values and slot < 3 else 0
        b += bytes([layout, 0, fill, 0])                   # layout, no mutation, exact size
        if fill:
            b += bytes((i * 97 + 13) & 255 for i in range(256))
    b += bytes([stage, opt, 0])
    return bytes(b)

def npy_image(descr, shape, data, version=1):
    dims = ', '.join(str(s) for s in shape) + (',' if len(shape) == 1 else '')
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    pre = 10 if version == 1 else 12
    pad = (64 - (pre + len(header) + 1) % 64) % 64
    header = (header + ' ' * pad + '\n').encode()
    size = struct.pack('<H', len(header)) if version == 1 else struct.pack('<I', len(header))
    return b'\x93NUMPY' + bytes([version, 0]) + size + header + data

def main():
    out = 'fuzz/corpus/api'
    os.makedirs(out, exist_ok=True)
    k = 0
    for stage in range(6):
        for selector in range(5):
            dtype = (stage + selector) % 3
            n_tokens = [40, 100, 257, 500, 700][(stage * 2 + selector) % 5]
            seed = api_seed(stage, selector, dtype, n_tokens, block_idx=(stage + selector) % 2,
                            stride_exp=(selector + 1) % 4, k_start=1 + selector % 3,
                            layout=(stage + 2 * selector) % 3, hq_mult=(selector % 3),
                            head_idx=(stage + selector) % 5, out_dtype=(stage * 3 + selector) % 3,
                            opt=(stage * 7 + selector * 3) & 0x70, fuzz_values=(stage + selector) % 4 == 0)
            with open(os.path.join(out, 'seed-%02d' % k), 'wb') as f:
                f.write(seed)
            k += 1
    out = 'fuzz/corpus/npy'
    os.makedirs(out, exist_ok=True)
    images = [
        npy_image('<f4', (2, 3), struct.pack('<6f', *range(6))),
        npy_image('<f2', (4,), b'\x00\x3c' * 4),
        npy_image('<u2', (1, 2, 2), b'\x80\x3f' * 4, version=2),
        npy_image('<i4', (3, 1), struct.pack('<3i', -1, 0, 7), version=3),
        npy_image('<f4', (), struct.pack('<f', 1.5)),
        npy_image('<f4', (0, 5), b''),
    ]
    for i, img in enumerate(images):
        with open(os.path.join(out, 'seed-%02d.npy' % i), 'wb') as f:
            f.write(img)

if __name__ == '__main__':
    main()
