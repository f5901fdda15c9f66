import Foundation
import Testing
import Tensors
@testable import TeaCache
import TestSupport

/// Least-squares calibration (LAPACK dgels_) and presets.
@Suite struct CalibrationTests {
    /// A realistic target: the FLUX coefficients of TeaCache4FLUX (any degree-4 polynomial would do).
    static let truth = TeaCachePreset.fluxReference.coefficients

    /// Pairs (x, P(x) + noise) with x uniform in [0.02, 0.2]; noise uniform in ±`noise` (seeded).
    static func samples(count: Int, noise: Double, seed: UInt64) -> [CalibrationSample] {
        var rng = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            let x = 0.02 + 0.18 * (Double(rng.uniform()) + 1) / 2
            let y = RescalingPolynomial.evaluate(truth, at: x) + noise * Double(rng.uniform())
            return CalibrationSample(inputDistance: x, outputDistance: y)
        }
    }

    @Test func exactDataRecoversTheCoefficients() throws {
        let fit = try Calibration.fit(Self.samples(count: 60, noise: 0, seed: 1))
        for (got, want) in zip(fit.coefficients, Self.truth) {
            // Noise-free: only QR rounding on a scaled Vandermonde matrix (condition ~1e4).
            #expect(relativelyClose(got, want, 1e-7), "\(got) vs \(want)")
        }
        #expect(fit.rSquared > 1 - 1e-12)
        #expect(fit.rmsResidual < 1e-12)
    }

    @Test func noisyDataRecoversThePolynomialOnItsRange() throws {
        let fit = try Calibration.fit(Self.samples(count: 400, noise: 1e-3, seed: 2))
        #expect(fit.rSquared > 0.99)
        #expect(fit.rmsResidual < 1e-3)   // uniform ±1e-3 noise has RMS 5.8e-4
        #expect(fit.inputRange.lowerBound >= 0.02 && fit.inputRange.upperBound <= 0.2)
        #expect(fit.sampleCount == 400)
        // The fitted curve stays within a few noise RMS of the truth across the calibrated range.
        for i in 0...20 {
            let x = 0.02 + 0.18 * Double(i) / 20
            let err = abs(RescalingPolynomial.evaluate(fit.coefficients, at: x) - RescalingPolynomial.evaluate(Self.truth, at: x))
            #expect(err < 1e-3, "x = \(x): error \(err)")
        }
    }

    @Test func poorFitIsRefusedUnlessForced() throws {
        var rng = SeededGenerator(seed: 3)
        let junk = (0..<50).map { _ in
            CalibrationSample(inputDistance: 0.1 + 0.05 * Double(rng.uniform()), outputDistance: Double(rng.uniform()))
        }
        #expect {
            try Calibration.fit(junk, minimumRSquared: 0.8)
        } throws: { error in
            guard case let CacheError.poorCalibrationFit(r2, minimum) = error else { return false }
            return r2 < 0.8 && minimum == 0.8
        }
        let forced = try Calibration.fit(junk, minimumRSquared: 0.8, force: true)
        #expect(forced.rSquared < 0.8)
    }

    @Test func badSampleSetsAreTyped() {
        #expect(throws: CacheError.insufficientCalibrationSamples(count: 3, needed: 6)) {
            try Calibration.fit(Array(Self.samples(count: 3, noise: 0, seed: 4)))
        }
        var s = Self.samples(count: 20, noise: 0, seed: 5)
        s[7].outputDistance = .nan
        #expect(throws: CacheError.nonFiniteCalibrationSample(index: 7)) { try Calibration.fit(s) }
        // All x equal: rank-deficient design matrix.
        let flat = (0..<20).map { CalibrationSample(inputDistance: 0.1, outputDistance: Double($0)) }
        #expect(throws: CacheError.self) { try Calibration.fit(flat) }
    }

    @Test func presetJSONRoundTrip() throws {
        let fit = try Calibration.fit(Self.samples(count: 100, noise: 1e-4, seed: 6))
        let preset = try Calibration.preset(named: "tiny", from: fit, defaultThreshold: 0.3,
                                            modulatedInput: "block 0 norm1", provenance: "unit test")
        #expect(preset.calibratedRange == fit.inputRange)
        #expect(try TeaCachePreset(jsonData: try preset.jsonData()) == preset)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("teacache-preset-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try preset.save(to: url)
        #expect(try TeaCachePreset.load(from: url) == preset)
        #expect(try TeaCachePreset(jsonData: try TeaCachePreset.fluxReference.jsonData()) == .fluxReference)

        let config = try preset.configuration(guarded: true)
        #expect(config.guards.calibratedRange == fit.inputRange && config.threshold == 0.3)

        #expect(throws: CacheError.self) { try TeaCachePreset(jsonData: Data("not json".utf8)) }
        var broken = String(decoding: try TeaCachePreset.fluxReference.jsonData(), as: UTF8.self)
        broken = broken.replacingOccurrences(of: "\"defaultThreshold\" : 0.6", with: "\"defaultThreshold\" : -1")
        #expect(throws: CacheError.self) { try TeaCachePreset(jsonData: Data(broken.utf8)) }
        #expect(throws: CacheError.self) { try TeaCachePreset.load(from: url.appendingPathExtension("missing")) }
    }

    @Test func recorderFedByTheWrapperSeesTheSameDistances() throws {
        let model = try TinyDiT(seed: 20)
        let inputs = try CachedTransformerTests.inputs(seed: 21, batch: 1, tokens: 5, steps: 6, rates: [0.05])
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: [0, 0, 0, 1, 0], threshold: 0))
        cached.calibrationRecorder = CalibrationRecorder()
        for _ in 0..<2 {   // two runs: the recorder must not pair the last call of run 1 with run 2
            try cached.beginRun(steps: inputs.count)
            for input in inputs { _ = try cached(input) }
        }
        let samples = try #require(cached.calibrationRecorder).samples
        #expect(samples.count == 2 * (inputs.count - 1))
        let traceDistances = try #require(cached.trace).entries.dropFirst().map(\.distance)
        #expect(samples.suffix(inputs.count - 1).map(\.inputDistance) == traceDistances.compactMap { $0 })
        // Output distances from the recorder against a direct computation.
        let o1 = try model.forward(inputs[1]), o2 = try model.forward(inputs[2])
        #expect(samples[1].outputDistance == (try RelativeL1.distance(o2, previous: o1)))
    }
}
