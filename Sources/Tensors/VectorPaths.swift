import CKernels

/// The vector instruction paths the kernels of this process take, and a way to take only those an
/// AVX2-only CPU has.
///
/// Every kernel chooses its widest path from the CPU's features at run time (AVX-512F and AVX512_BF16,
/// else AVX2+FMA, else portable code). ``limitToAVX2()`` makes the whole process answer as a CPU with
/// AVX2+FMA and no AVX-512 would — the C kernels, attention, the bf16 conversions, oneDNN (capped at
/// AVX2, so it declines bf16 products and float32 products go to OpenBLAS) — so that such a CPU's route can
/// be measured and tested on a machine that has more. No environment variable is read or set.
public enum VectorPaths {
    /// Limits every kernel of this process to AVX2+FMA paths, for the rest of its life.
    ///
    /// Call it before the first kernel or product runs: oneDNN fixes its instruction set at its first use,
    /// and ``WeightProducts`` decides its routes once.
    /// - Returns: `false` when it came too late for oneDNN (the C kernels are limited anyway); the caller
    ///   should then report that the measurement would not be AVX2-only.
    @discardableResult
    public static func limitToAVX2() -> Bool {
        ck_limit_to_avx2()
        return ck_dnnl_limit_to_avx2() != 0
    }

    /// Whether ``limitToAVX2()`` was called.
    public static var isLimitedToAVX2: Bool { ck_limited_to_avx2() != 0 }

    /// The widest C-kernel path taken: "AVX-512F", "AVX2+FMA" or "portable" (with " (limited to AVX2)"
    /// after ``limitToAVX2()`` on a CPU that has AVX-512).
    public static var description: String {
        let name = ["portable", "AVX2+FMA", "AVX-512F"][Int(ck_level())]
        return isLimitedToAVX2 ? "\(name) (limited to AVX2)" : name
    }
}
