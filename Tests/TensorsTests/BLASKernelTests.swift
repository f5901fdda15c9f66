import Testing
@testable import Tensors

/// The kernel report every benchmark prints.
@Suite struct BLASKernelTests {
    @Test func reportsTheRunningCore() {
        #expect(!BLASKernel.coreName.isEmpty && BLASKernel.coreName != "unknown")
        #expect(BLASKernel.reportLines.first?.hasPrefix("OpenBLAS core \(BLASKernel.coreName)") == true)
    }

    @Test func warnsOnlyWhenTheEnvironmentPinsACoreWithoutAVX512OnAnAVX512CPU() {
        let avx512 = ["avx2", "fma", "avx512f"]
        let pinned = BLASKernel.reportLines(environment: ["OPENBLAS_CORETYPE": "Haswell"], features: avx512, core: "Haswell")
        #expect(pinned.count == 2 && pinned[1].contains("unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE"))
        #expect(BLASKernel.reportLines(environment: [:], features: avx512, core: "SkylakeX").count == 1)
        #expect(BLASKernel.reportLines(environment: ["OPENBLAS_CORETYPE": "Haswell"], features: ["avx2", "fma"], core: "Haswell").count == 1)
        #expect(BLASKernel.reportLines(environment: ["OPENBLAS_CORETYPE": "SkylakeX"], features: avx512, core: "SkylakeX").count == 1)
    }
}
