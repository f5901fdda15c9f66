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
        #expect(throws: DemoError.invalidOption("threshold -0.5: must be a finite number >= 0 (0 disables skipping); give e.g. 0.1,0.3,0.6")) {
            try DemoOptions(thresholds: [0.1, -0.5]).validate()
        }
    }

    @Test func zeroStepsAreRejected() {
        #expect(throws: DemoError.invalidOption("--steps 0: must be from 1 to 1000000; give the number of sampling steps")) {
            try DemoOptions(source: ModelSource(steps: 0)).validate()
        }
        #expect(throws: DemoError.self) { try CalibrationOptions(source: ModelSource(steps: 0)).validate() }
        // A mistyped huge step count used to abort on allocating the sampler's arrays.
        #expect(throws: DemoError.invalidOption("--steps 100000000000: must be from 1 to 1000000; give the number of sampling steps")) {
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

/// The time estimate printed before a long demo.
@Suite struct RunEstimateTests {
    @Test func estimateIsCallsTimesForwardTime() {
        let e = RunEstimate(forwardSeconds: 0.4, steps: 28, callsPerStep: 2, runs: 14)
        #expect(e.calls == 784 && abs(e.upperBoundSeconds - 313.6) < 1e-9)
        #expect(e.sentence == "estimate: 14 runs × 28 steps × 2 calls = 784 forwards of 0.4 s: at most 5.2 min "
                + "(cached runs skip some); press Ctrl-C to stop, or lower --steps or --repeats")
        #expect(RunEstimate.duration(45) == "45 s" && RunEstimate.duration(3 * 3600) == "3 h")
        #expect(RunEstimate.duration(87 * 86_400) == "87 days")
        #expect(RunEstimate.count(14_000_000) == "14,000,000" && RunEstimate.count(999) == "999")
    }
}
