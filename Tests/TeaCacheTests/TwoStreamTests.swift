import Testing
import Tensors
@testable import TeaCache

/// A CogVideoX-shaped model with two cached streams (video and text tokens) that the block stack mixes
/// jointly, and a head that reads both: a skipped call must add each stream's own residual.
struct TwoStreamDiT: DiffusionTransformer {
    struct Input {
        var video: Tensor   // [B, S, C]
        var text: Tensor    // [B, T, C]
        var t: Float
    }
    struct State: TransformerState {
        var streams: [Tensor]   // [video [B, S, D], text [B, T, D]]
        var temb: Tensor        // [B, D]
    }

    let videoIn: Tensor, textIn: Tensor, timeW: Tensor, mix: Tensor, ada: Tensor, headVideo: Tensor, headText: Tensor
    let counter = EvaluationCounter()

    init(seed: UInt64, channels: Int = 3, width: Int = 8) throws {
        var rng = SeededGenerator(seed: seed)
        videoIn = try rng.tensor([width, channels], scale: 0.5)
        textIn = try rng.tensor([width, channels], scale: 0.5)
        timeW = try rng.tensor([width, 2], scale: 0.5)
        mix = try rng.tensor([width, width], scale: 0.4)
        ada = try rng.tensor([2 * width, width], scale: 0.3)
        headVideo = try rng.tensor([channels, width], scale: 0.4)
        headText = try rng.tensor([channels, width], scale: 0.4)
    }

    func prepare(_ input: Input) throws -> State {
        let b = input.video.shape[0]
        let features = try Tensor(shape: [b, 2], scalars: (0..<b).flatMap { _ in
            [Foundation.sin(input.t), Foundation.cos(input.t)]
        })
        return State(streams: [try linear(input.video, weight: videoIn), try linear(input.text, weight: textIn)],
                     temb: silu(try linear(features, weight: timeW)))
    }

    func modulatedInput(_ state: State) throws -> Tensor {
        let p = try linear(state.temb, weight: ada).chunked(2, axis: 1)
        return try modulate(try layerNorm(state.streams[0], eps: 1e-6), scale: p[1], shift: p[0])
    }

    /// One joint block: text and video attend through a shared token mix (mean over the joint sequence).
    func runBlocks(_ state: inout State) throws {
        counter.blockStackRuns += 1
        let s = state.streams[0].shape[1], t = state.streams[1].shape[1]
        let joint = try Tensor.concatenate([state.streams[1], state.streams[0]], axis: 1)   // text first
        let y = gelu(try linear(try modulatedInputJoint(joint, state.temb), weight: mix))
        let out = try joint + y
        let parts = try out.split(sizes: [t, s], axis: 1)
        state.streams = [parts[1], parts[0]]
    }

    private func modulatedInputJoint(_ joint: Tensor, _ temb: Tensor) throws -> Tensor {
        let p = try linear(temb, weight: ada).chunked(2, axis: 1)
        return try modulate(try layerNorm(joint, eps: 1e-6), scale: p[1], shift: p[0])
    }

    /// Video projection plus the mean text projection, so both cached streams reach the output.
    func outputHead(_ state: State) throws -> Tensor {
        let v = try linear(state.streams[0], weight: headVideo)                  // [B, S, C]
        let t = try linear(state.streams[1], weight: headText)                   // [B, T, C]
        let tMean = try t.sum(axis: 1) * (1 / Float(state.streams[1].shape[1]))  // [B, C]
        return try v + (try tMean.unsqueezed(1))
    }
}

extension Tensor {
    /// Sum over one axis by a naive loop (test helper).
    func sum(axis: Int) throws -> Tensor {
        var outShape = shape
        let n = outShape.remove(at: axis)
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        let x = scalars
        var out = [Float](repeating: 0, count: outer * inner)
        for o in 0..<outer { for k in 0..<n { for i in 0..<inner { out[o * inner + i] += x[(o * n + k) * inner + i] } } }
        return try Tensor(shape: outShape, scalars: out)
    }
}

@Suite struct TwoStreamTests {
    static func inputs(steps: Int) throws -> [TwoStreamDiT.Input] {
        var rng = SeededGenerator(seed: 41)
        var video = try rng.tensor([2, 5, 3]), text = try rng.tensor([2, 3, 3])
        var out: [TwoStreamDiT.Input] = []
        for k in 0..<steps {
            out.append(.init(video: video, text: text, t: 0.03 * Float(k)))
            video = try video + (try rng.tensor([2, 5, 3], scale: 0.01))
            text = try text + (try rng.tensor([2, 3, 3], scale: 0.01))
        }
        return out
    }

    /// With a huge threshold only the first and last calls compute; every skipped call must equal the
    /// head applied to each freshly prepared stream plus that stream's residual from call 0, computed
    /// here step by step, independently of the wrapper's bookkeeping.
    @Test func skippedCallsAddEachStreamsOwnResidual() throws {
        let model = try TwoStreamDiT(seed: 40)
        let inputs = try Self.inputs(steps: 5)
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: [0, 0, 0, 1, 0], threshold: 1e9))
        try cached.beginRun(steps: inputs.count)
        let outs = try inputs.map { try cached($0) }
        #expect(cached.trace?.entries.map(\.decision) == [.compute, .skip, .skip, .skip, .compute])
        #expect(model.counter.blockStackRuns == 2)

        var s0 = try model.prepare(inputs[0])
        let before = s0.streams
        try model.runBlocks(&s0)
        let residuals = try zip(s0.streams, before).map { try $0 - $1 }
        #expect(residuals[1].meanAbsolute() > 1e-3, "the text stream must change in the blocks for this test to mean anything")
        for k in 1..<4 {
            var s = try model.prepare(inputs[k])
            s.streams = try zip(s.streams, residuals).map { try $0 + $1 }
            #expect(outs[k] == (try model.outputHead(s)), "call \(k)")
            // Re-adding only the video residual gives a different output: the text residual is used.
            var videoOnly = try model.prepare(inputs[k])
            videoOnly.streams[0] = try videoOnly.streams[0] + residuals[0]
            #expect(outs[k] != (try model.outputHead(videoOnly)))
        }
        #expect(outs[0] == (try model.forward(inputs[0])))
        #expect(outs[4] == (try model.forward(inputs[4])))
    }
}

import Foundation
