import DiTModels
import Foundation
import Testing
import TeaCache
@testable import TeaCacheDemo

@Suite struct OptionTests {
    @Test func thresholdListParses() throws {
        #expect(try DemoOptions.parseThresholds("0.1, 0.3,0.6") == [0.1, 0.3, 0.6])
    }

    @Test(arguments: ["-0.1", "0.1,-1", "nan", "abc", "", "0.1,,0.2", "inf"])
    func badThresholdsAreRejected(_ text: String) {
        #expect(throws: DemoError.self) { try DemoOptions.parseThresholds(text) }
    }

    @Test func negativeThresholdMessageSaysWhatToFix() {
        #expect(throws: DemoError.invalidOption("threshold -0.5 must be a finite number >= 0 (0 disables skipping)")) {
            try DemoOptions(thresholds: [0.1, -0.5]).validate()
        }
    }

    @Test func zeroStepsAreRejected() {
        #expect(throws: DemoError.invalidOption("--steps is 0; use a value from 1 to 1000000")) {
            try DemoOptions(source: ModelSource(steps: 0)).validate()
        }
        #expect(throws: DemoError.self) { try CalibrationOptions(source: ModelSource(steps: 0)).validate() }
        // A mistyped huge step count used to abort on allocating the sampler's arrays.
        #expect(throws: DemoError.invalidOption("--steps is 100000000000; use a value from 1 to 1000000")) {
            try DemoOptions(source: ModelSource(steps: 100_000_000_000)).validate()
        }
    }

    @Test func unknownModelIsRejected() {
        #expect(throws: DemoError.unknownModel("sd3", available: DemoFamily.modelNames)) {
            try DemoOptions(source: ModelSource(family: "sd3")).validate()
        }
        #expect(DiTFamilies.names.contains("flux"))
    }

    @Test func missingFilesAndBadCountsAreRejected() {
        #expect(throws: DemoError.self) {
            try DemoOptions(source: ModelSource(configPath: "/nonexistent/config.json")).validate()
        }
        #expect(throws: DemoError.self) { try DemoOptions(repeats: 0).validate() }
        #expect(throws: DemoError.self) { try CalibrationOptions(seeds: 0).validate() }
        #expect(throws: DemoError.self) { try CalibrationOptions(defaultThreshold: -1).validate() }
    }

    @Test func registryListsBothFamilies() throws {
        #expect(Array(DiTFamilies.builtIn.map { $0.name }.prefix(2)) == ["flux", "wan21"])
        #expect(try DemoFamily(named: "wan21").builtInPreset == .wan21T2V1_3B)
    }
}
