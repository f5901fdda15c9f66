import COpenBLAS
import Foundation

/// Which OpenBLAS kernel the matrix products run on, and whether the environment pins a slower one than
/// this CPU supports (`OPENBLAS_CORETYPE`), so every benchmark figure can say what it ran on.
public enum BLASKernel {
    /// The core OpenBLAS selected (`openblas_get_corename`, e.g. `Haswell`, `SkylakeX`, `Zen`).
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// OpenBLAS's build configuration (`openblas_get_config`).
    public static var configuration: String {
        guard let p = openblas_get_config() else { return "unknown" }
        return String(cString: p).trimmingCharacters(in: .whitespaces)
    }

    /// The x86 vector extensions this CPU reports (`/proc/cpuinfo` flags among avx2, fma, avx512f,
    /// avx512_bf16, amx_bf16), empty where that file is unavailable.
    public static var cpuVectorFeatures: [String] {
        // No /proc/cpuinfo (not Linux, or a sandbox without it): the CPU is reported as unknown, which is true.
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        let flags = Set(line.split(separator: " ").map(String.init))
        return ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"].filter(flags.contains)
    }

    /// One line naming the kernel, then a warning when `OPENBLAS_CORETYPE` pins a core without AVX-512
    /// on a CPU that has it (OpenBLAS would otherwise pick its faster AVX-512 kernels).
    public static var reportLines: [String] {
        reportLines(environment: ProcessInfo.processInfo.environment, features: cpuVectorFeatures, core: coreName)
    }

    /// ``reportLines`` for a given environment, CPU feature list and core name.
    public static func reportLines(environment env: [String: String], features: [String], core coreName: String) -> [String] {
        var lines = ["OpenBLAS core \(coreName) (CPU: \(features.isEmpty ? "no AVX2" : features.joined(separator: " ")); "
                     + "OPENBLAS_CORETYPE \(env["OPENBLAS_CORETYPE"] ?? "unset"))"]
        let avx512Cores = ["skylakex", "cooperlake", "sapphirerapids"]
        if let pinned = env["OPENBLAS_CORETYPE"], features.contains("avx512f"),
           !avx512Cores.contains(coreName.lowercased()) {
            lines.append("note: OPENBLAS_CORETYPE=\(pinned) pins the \(coreName) kernel on a CPU with AVX-512; "
                         + "unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in this command to measure the AVX-512 kernel")
        }
        return lines
    }
}
