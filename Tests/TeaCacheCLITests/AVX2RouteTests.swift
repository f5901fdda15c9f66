import Foundation
import Testing

/// The AVX2-only route end to end: `--avx2-only` makes the process take only the paths an AVX2+FMA CPU
/// without AVX-512 has (C kernels, the fused attention, bf16 conversions, oneDNN capped at AVX2), and the
/// families still match their diffusers fixtures there — float32 within the fixture tolerance, bfloat16
/// (float32 products on converted panels, float32 attention) within the bf16 one. Each check runs in its
/// own process, since the limit is process-wide and one way.
@Suite struct AVX2RouteTests {
    /// Latte has temporal attention over a few frames (the few-keys path) and spatial attention (tiles);
    /// FLUX the joint sequences; Wan2.1 cross-attention to text.
    @Test(arguments: ["Tests/Fixtures/latte", "Tests/Fixtures/flux", "Tests/Fixtures/wan21"], ["float32", "bfloat16"])
    func fixturesMatchOnTheAVX2Route(_ folder: String, _ precision: String) throws {
        let (status, out, err) = try ErrorMessageTests.teacache(["verify", folder, "--avx2-only", "--precision", precision])
        #expect(status == 0, "\(folder) \(precision): \(err)")
        #expect(out.contains("PASS"), "\(out)")
        // On a CPU without AVX2 the portable paths run: what matters is that AVX-512 is not taken.
        #expect(out.contains("vector paths: AVX2+FMA") || out.contains("vector paths: portable"), "\(out)")
        #expect(!out.contains("AVX-512F"), "\(out)")
        if precision == "bfloat16" {
            #expect(out.contains("float32 products on converted panels"), "no bf16 products on the AVX2 route: \(out)")
        }
    }

    /// `bench kernels --avx2-only` reports the limit and float32 products off oneDNN's AVX-512 kernels.
    @Test func benchKernelsReportsTheRoute() throws {
        let (status, out, err) = try ErrorMessageTests.teacache(
            ["bench", "kernels", "--avx2-only", "--repeats", "1", "--linear", "8x8x8", "--attention", "1x20x20x2x8"])
        #expect(status == 0, "\(err)")
        #expect(out.contains("vector paths: AVX2+FMA") || out.contains("vector paths: portable"), "\(out)")
        #expect(out.contains("attention with bf16 products: not on this CPU"), "\(out)")
    }
}
