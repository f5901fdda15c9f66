import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// Every built-in family runs block by block (``BlockwiseDiffusionTransformer``): the blocks one at a time
/// plus `finishBlocks` give the same streams as `runBlocks`, and First-Block Cache at threshold 0 (which
/// skips only an exactly unchanged block-0 residual) reproduces the uncached fixture loop.
@Suite struct BlockwiseTests {
    /// The public fixture folder of each built-in family.
    static var cases: [String] {
        DiTFamilies.harnessed.flatMap { $0.fixtureNames }.filter {
            FileManager.default.fileExists(atPath: Fixtures.folder($0).appendingPathComponent("model.safetensors").path)
        }
    }

    @Test(arguments: cases)
    func blockByBlockEqualsTheStack(_ name: String) throws {
        let folder = try FixtureFolder(Fixtures.folder(name))
        let (family, _) = try FixtureVerifier.resolve(folder)
        try Self.check(family, folder)
    }

    static func check<F: DiTFamilyHarness>(_: F.Type, _ folder: FixtureFolder) throws {
        let configuration = try F.Configuration.parse(folder.config, className: folder.className)
        let model = try F.load(configuration, weightsAt: folder.weightsURL)
        let blockwise = try #require(model as? any BlockwiseDiffusionTransformer, "\(F.name) is not blockwise")
        let input = try F.forwardInput(folder.forwardArguments(), configuration: configuration)
        var whole = try model.prepare(input)
        try model.runBlocks(&whole)
        let stepwise = try Self.stepwise(blockwise, input)
        let expected = whole.streams
        #expect(stepwise.count == expected.count)
        for (a, b) in zip(stepwise, expected) {
            #expect(a.shape == b.shape)
            #expect(try Tensor.relativeL2(a, b) <= 1e-6, "\(F.name): block-by-block streams")
        }
        let uncached = try FixtureVerifier.sample(folder, F.self, model: model, configuration: configuration, policy: nil)
        let fbc = try FixtureVerifier.sample(folder, F.self, model: model, configuration: configuration,
                                             policy: .firstBlock(try FirstBlockCacheConfiguration(threshold: 0)))
        #expect(fbc.trace?.summary.skipped == 0)
        #expect(try Tensor.relativeL2(fbc.latent, uncached.latent) <= 1e-6, "\(F.name): FBC at 0")
    }

    static func stepwise<B: BlockwiseDiffusionTransformer, I>(_ b: B, _ input: I) throws -> [Tensor] {
        var s = try b.prepare(try #require(input as? B.Input))
        for i in 0..<b.blockCount(s) { try b.runBlock(i, &s) }
        try b.finishBlocks(&s)
        return s.streams
    }
}
