import Tensors
@testable import TeaCache

/// Test-data helpers on the library's seeded generator.
extension SeededGenerator {
    /// Uniform in [-1, 1).
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
    mutating func tensor(_ shape: [Int], scale: Float = 1) throws -> Tensor {
        let n = shape.reduce(1, *)
        return try Tensor(shape: shape, scalars: (0..<n).map { _ in uniform() * scale })
    }
}


/// Counts block-stack evaluations (a reference type so the model value can share it).
final class EvaluationCounter {
    var blockStackRuns = 0
    var rowsThroughBlocks = 0
}

/// A small adaLN DiT: patch-embedding Linear, sinusoidal timestep MLP, `depth` blocks of
/// `h += gate · MLP(modulate(LayerNorm(h), scale, shift))`, and a modulated LayerNorm + Linear head.
/// The modulated input is block 0's `modulate(LayerNorm(h_in), scale, shift)` (FLUX-style).
struct TinyDiT: DiffusionTransformer {
    struct Input {
        /// `[B, S, C]` latent tokens.
        var latent: Tensor
        /// One timestep per batch element.
        var timesteps: [Float]
    }

    struct State: BatchSelectableState {
        var streams: [Tensor]
        /// `[B, D]` timestep embedding.
        var temb: Tensor
        var batchSize: Int { temb.shape[0] }
        func selecting(batch indices: [Int]) throws -> State {
            func gather(_ t: Tensor) throws -> Tensor {
                try Tensor.concatenate(indices.map { try t.slice(axis: 0, $0..<($0 + 1)) }, axis: 0)
            }
            return State(streams: try streams.map(gather), temb: try gather(temb))
        }
    }

    struct Block {
        var ada: Tensor, adaBias: Tensor     // [3D, D]: shift, scale, gate
        var w1: Tensor, b1: Tensor           // [2D, D]
        var w2: Tensor, b2: Tensor           // [D, 2D]
    }

    let channels: Int, width: Int, frequencies: Int
    let embed: Tensor, embedBias: Tensor
    let timeW: Tensor, timeB: Tensor
    let blocks: [Block]
    let headAda: Tensor, headOut: Tensor
    let counter = EvaluationCounter()

    init(seed: UInt64, channels: Int = 4, width: Int = 16, depth: Int = 2, frequencies: Int = 8) throws {
        var rng = SeededGenerator(seed: seed)
        self.channels = channels
        self.width = width
        self.frequencies = frequencies
        let d = width
        embed = try rng.tensor([d, channels], scale: 0.5)
        embedBias = try rng.tensor([d], scale: 0.02)
        timeW = try rng.tensor([d, 2 * frequencies], scale: 0.3)
        timeB = try rng.tensor([d], scale: 0.02)
        blocks = try (0..<depth).map { _ in
            Block(ada: try rng.tensor([3 * d, d], scale: 0.25), adaBias: try rng.tensor([3 * d], scale: 0.02),
                  w1: try rng.tensor([2 * d, d], scale: 0.25), b1: try rng.tensor([2 * d], scale: 0.02),
                  w2: try rng.tensor([d, 2 * d], scale: 0.18), b2: try rng.tensor([d], scale: 0.02))
        }
        headAda = try rng.tensor([2 * d, d], scale: 0.25)
        headOut = try rng.tensor([channels, d], scale: 0.25)
    }

    /// Sinusoidal features of t (frequencies tapered so consecutive steps move smoothly).
    func timeFeatures(_ timesteps: [Float]) throws -> Tensor {
        var v: [Float] = []
        for t in timesteps {
            for f in 0..<frequencies { v.append(Foundation.sin(t * Float(f + 1) * 0.7)) }
            for f in 0..<frequencies { v.append(Foundation.cos(t * Float(f + 1) * 0.7)) }
        }
        return try Tensor(shape: [timesteps.count, 2 * frequencies], scalars: v)
    }

    func prepare(_ input: Input) throws -> State {
        guard input.latent.rank == 3, input.latent.shape[0] == input.timesteps.count else {
            throw CacheError.shapeMismatch("latent \(input.latent.shape) vs \(input.timesteps.count) timesteps")
        }
        let h = try linear(input.latent, weight: embed, bias: embedBias)
        let temb = silu(try linear(try timeFeatures(input.timesteps), weight: timeW, bias: timeB))
        return State(streams: [h], temb: temb)
    }

    func modulation(_ block: Block, _ temb: Tensor) throws -> [Tensor] {
        try linear(temb, weight: block.ada, bias: block.adaBias).chunked(3, axis: 1)
    }

    func modulatedInput(_ state: State) throws -> Tensor {
        let p = try modulation(blocks[0], state.temb)
        return try modulate(try layerNorm(state.streams[0], eps: 1e-6), scale: p[1], shift: p[0])
    }

    func runBlocks(_ state: inout State) throws {
        counter.blockStackRuns += 1
        counter.rowsThroughBlocks += state.batchSize
        var h = state.streams[0]
        for block in blocks {
            let p = try modulation(block, state.temb)
            let x = try modulate(try layerNorm(h, eps: 1e-6), scale: p[1], shift: p[0])
            let y = try linear(gelu(try linear(x, weight: block.w1, bias: block.b1)), weight: block.w2, bias: block.b2)
            h = try h + (try y * (try p[2].unsqueezed(1)))
        }
        state.streams[0] = h
    }

    func outputHead(_ state: State) throws -> Tensor {
        let p = try linear(state.temb, weight: headAda).chunked(2, axis: 1)
        let x = try modulate(try layerNorm(state.streams[0], eps: 1e-6), scale: p[1], shift: p[0])
        return try linear(x, weight: headOut)
    }
}

import Foundation

extension TinyDiT: BlockwiseDiffusionTransformer {
    func blockCount(_ state: State) -> Int { blocks.count }

    /// Block `index` alone (``runBlocks(_:)`` is the same computation, block by block, plus the counter).
    func runBlock(_ index: Int, _ state: inout State) throws {
        let block = blocks[index]
        let h = state.streams[0]
        let p = try modulation(block, state.temb)
        let x = try modulate(try layerNorm(h, eps: 1e-6), scale: p[1], shift: p[0])
        let y = try linear(gelu(try linear(x, weight: block.w1, bias: block.b1)), weight: block.w2, bias: block.b2)
        state.streams[0] = try h + (try y * (try p[2].unsqueezed(1)))
    }
}

/// TinyDiT without block access: only the coarse protocol.
struct CoarseTinyDiT: DiffusionTransformer {
    let inner: TinyDiT
    func prepare(_ input: TinyDiT.Input) throws -> TinyDiT.State { try inner.prepare(input) }
    func modulatedInput(_ state: TinyDiT.State) throws -> Tensor { try inner.modulatedInput(state) }
    func runBlocks(_ state: inout TinyDiT.State) throws { try inner.runBlocks(&state) }
    func outputHead(_ state: TinyDiT.State) throws -> Tensor { try inner.outputHead(state) }
}
