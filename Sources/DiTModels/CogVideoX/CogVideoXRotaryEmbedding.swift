import Foundation
import Tensors

/// The 3-D rotary table of the CogVideoX pipelines (`get_3d_rotary_pos_embed` as
/// `CogVideoXPipeline._prepare_rotary_positional_embeddings` calls it), computed from the latent sizes.
///
/// The head dimension D is split into frame, row and column parts of `D//4`, `D//8·3`, `D//8·3`
/// channels; each part rotates by its axis position with frequencies `1 / 10000^(2i/dim)`, each
/// frequency repeated for an interleaved pair (the layout of `RotaryEmbedding.Layout.interleaved`).
/// Positions depend on the layout:
/// - CogVideoX 1.0 (`patch_size_t` null): the crop region of the grid inside the
///   `sample_height/p × sample_width/p` base (`get_resize_crop_region_for_grid`, Python's
///   round-half-to-even), rows and columns `linspace(start, stop·(n−1)/n, n)`, frames `0 … F−1`;
/// - CogVideoX 1.5: grid type `"slice"`: integer positions `0 … n−1`, the grid no larger than the base
///   (`max_size`), frames `0 … ⌈F/p_t⌉−1`.
///
/// Everything is float32, as the pipeline computes it (`freqs_dtype` float32): the frequencies, the
/// position·frequency products and their cosines and sines, so the table matches the pipeline's to a
/// few float32 ulps (torch's vectorised `linspace`/`pow` may round a last bit differently).
enum CogVideoXRotaryEmbedding {
    /// `get_resize_crop_region_for_grid((h, w), base_width, base_height)`: the region `(top, left)` to
    /// `(bottom, right)` a `h × w` grid resized to fit the base occupies, centred.
    static func resizeCropRegion(
        grid: (h: Int, w: Int), baseWidth tw: Int, baseHeight th: Int
    ) -> (top: Int, left: Int, bottom: Int, right: Int) {
        let r = Double(grid.h) / Double(grid.w)
        let resizeHeight: Int, resizeWidth: Int
        if r > Double(th) / Double(tw) {
            resizeHeight = th
            resizeWidth = Int((Double(th) / Double(grid.h) * Double(grid.w)).rounded(.toNearestOrEven))
        } else {
            resizeWidth = tw
            resizeHeight = Int((Double(tw) / Double(grid.w) * Double(grid.h)).rounded(.toNearestOrEven))
        }
        let top = Int((Double(th - resizeHeight) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(tw - resizeWidth) / 2).rounded(.toNearestOrEven))
        return (top, left, top + resizeHeight, left + resizeWidth)
    }

    /// `torch.linspace(start, end, steps, dtype=float32)`: step `(end − start)/(steps − 1)` in float32,
    /// the first half counted up from `start`, the second half down from `end`.
    static func linspace(start: Float, end: Float, steps: Int) -> [Float] {
        guard steps > 1 else { return steps == 1 ? [start] : [] }
        let step = (end - start) / Float(steps - 1)
        let halfway = steps / 2
        return (0..<steps).map { i in i < halfway ? start + step * Float(i) : end - step * Float(steps - i - 1) }
    }

    /// The positions of each axis for a latent grid of `frames × height × width` (before patching).
    /// - Throws: ``TensorError/invalidArgument(operation:reason:)`` when a 1.5 grid exceeds the base.
    static func positions(
        configuration c: CogVideoXConfiguration, frames: Int, height: Int, width: Int
    ) throws(TensorError) -> (frames: [Float], rows: [Float], columns: [Float]) {
        let p = c.patchSize
        let (gh, gw) = (height / p, width / p)
        let (baseW, baseH) = (c.sampleWidth / p, c.sampleHeight / p)
        if let pt = c.patchSizeT {
            guard gh <= baseH, gw <= baseW else {
                throw .invalidArgument(operation: "CogVideoX rotary table",
                                       reason: "the patched grid \(gh)×\(gw) exceeds the rotary base sample_height/patch_size × "
                                        + "sample_width/patch_size = \(baseH)×\(baseW) (the pipelines' slice grid)")
            }
            let t = (frames + pt - 1) / pt
            return ((0..<t).map(Float.init), (0..<gh).map(Float.init), (0..<gw).map(Float.init))
        }
        let crop = resizeCropRegion(grid: (gh, gw), baseWidth: baseW, baseHeight: baseH)
        let rows = linspace(start: Float(crop.top), end: Float(Double(crop.bottom * (gh - 1)) / Double(gh)), steps: gh)
        let columns = linspace(start: Float(crop.left), end: Float(Double(crop.right * (gw - 1)) / Double(gw)), steps: gw)
        let t = linspace(start: 0, end: Float(Double(frames * (frames - 1)) / Double(frames)), steps: frames)
        return (t, rows, columns)
    }

    /// The cos/sin tables `[t·h·w, D]` of the given axis positions, tokens in (frame, row, column) order.
    static func tables(
        headDim d: Int, frames: [Float], rows: [Float], columns: [Float]
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let dims = [d / 4, d / 8 * 3, d / 8 * 3]
        guard dims.allSatisfy({ $0 > 0 && $0 % 2 == 0 }), dims.reduce(0, +) == d else {
            throw .invalidArgument(operation: "CogVideoX rotary table",
                                   reason: "head dimension \(d) must be a multiple of 16 (split \(dims))")
        }
        let axes = [frames, rows, columns].enumerated().map { a, positions in axisTable(positions, dim: dims[a]) }
        let n = frames.count * rows.count * columns.count
        var cosT = [Float](repeating: 0, count: n * d), sinT = [Float](repeating: 0, count: n * d)
        var token = 0
        for f in 0..<frames.count {
            for r in 0..<rows.count {
                for col in 0..<columns.count {
                    var offset = token * d
                    for (a, index) in [f, r, col].enumerated() {
                        let dim = dims[a], (c, s) = axes[a]
                        for j in 0..<dim {
                            cosT[offset + j] = c[index * dim + j]
                            sinT[offset + j] = s[index * dim + j]
                        }
                        offset += dim
                    }
                    token += 1
                }
            }
        }
        return (try Tensor(shape: [n, d], scalars: cosT), try Tensor(shape: [n, d], scalars: sinT))
    }

    /// The pipeline's tables for a latent `[B, F, C, H, W]` of `frames × height × width`.
    static func tables(
        configuration c: CogVideoXConfiguration, frames: Int, height: Int, width: Int
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let p = try positions(configuration: c, frames: frames, height: height, width: width)
        return try tables(headDim: c.attentionHeadDim, frames: p.frames, rows: p.rows, columns: p.columns)
    }

    /// `get_1d_rotary_pos_embed(dim, positions, use_real=True)` in float32: `[count, dim]` cos and sin,
    /// each frequency repeated twice.
    static func axisTable(_ positions: [Float], dim: Int) -> (cos: [Float], sin: [Float]) {
        let freqs: [Float] = (0..<(dim / 2)).map { i in
            let e = Float(2 * i) / Float(dim)
            return 1 / Float(Foundation.pow(10000.0, Double(e)))
        }
        var c = [Float](repeating: 0, count: positions.count * dim), s = c
        for (k, p) in positions.enumerated() {
            for (i, f) in freqs.enumerated() {
                let angle = Double(p * f)
                let (cv, sv) = (Float(Foundation.cos(angle)), Float(Foundation.sin(angle)))
                c[k * dim + 2 * i] = cv; c[k * dim + 2 * i + 1] = cv
                s[k * dim + 2 * i] = sv; s[k * dim + 2 * i + 1] = sv
            }
        }
        return (c, s)
    }

    /// Tables for the joint `[text; video]` sequence: identity rows (cos 1, sin 0) for the `textLength`
    /// text tokens, which diffusers leaves unrotated, then the video tables.
    static func jointTables(
        _ video: (cos: Tensor, sin: Tensor), textLength: Int
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let d = video.cos.shape[1]
        let ones = try Tensor(shape: [textLength, d], repeating: 1), zeros = try Tensor(zeros: [textLength, d])
        return (try Tensor.concatenate([ones, video.cos], axis: 0), try Tensor.concatenate([zeros, video.sin], axis: 0))
    }
}
