"""Small LLVM intrinsics numba lacks: memcpy/memset between arrays and a cache prefetch hint.

numba copies array slices byte by byte and has no prefetch; these three make the packet-view and decode
loops several times faster. Callers must keep indices inside the arrays (nothing here checks them).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def memcpy(typingctx, dst, dst_off, src, src_off, n):
    """memcpy between two contiguous uint8 arrays (numba's slice copy goes byte by byte)."""
    sig = types.void(dst, dst_off, src, src_off, n)

    def codegen(context, builder, signature, args):
        d, doff, s, soff, nn = args
        dptr = builder.gep(context.make_array(signature.args[0])(context, builder, d).data, [doff])
        sptr = builder.gep(context.make_array(signature.args[2])(context, builder, s).data, [soff])
        cgutils.raw_memcpy(builder, dptr, sptr, nn, 1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def memzero(typingctx, dst, dst_off, n):
    sig = types.void(dst, dst_off, n)

    def codegen(context, builder, signature, args):
        d, doff, nn = args
        dptr = builder.gep(context.make_array(signature.args[0])(context, builder, d).data, [doff])
        cgutils.memset(builder, dptr, nn, 0)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the CPU to load ``arr[idx]`` into cache (packets a few ahead are read while this one is masked)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        a, i = args
        ptr = builder.gep(context.make_array(signature.args[0])(context, builder, a).data, [i])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen
