import Foundation
import Tensors

/// The plain Euler flow-matching sampler shared by every model family (FORMAT.md §2).
///
/// `sigmas[i] = Float(1 − i/N)` (computed in Double, rounded to Float), `sigmas[N] = 0`,
/// `dt[i] = sigmas[i+1] − sigmas[i]` in Float. Step i calls the model at `timesteps[i]` (see
/// ``TimestepConvention``), optionally a second time for the unconditional branch and combines
/// `out = out_u + g · (out_c − out_u)` in Float32, turns the output into a velocity
/// (``VelocityConvention``), and updates `latent = latent + dt[i] · v` (one Float multiply, one Float
/// add per element).
///
/// The model is a closure, so the same loop runs with or without a ``CachedTransformer``.
public struct FlowMatchEulerSampler: Sendable {
    /// What the progress callback sees after each step.
    public struct Progress: Sendable {
        /// The number of completed steps (1 after the first).
        public var step: Int
        /// The total number of steps.
        public var total: Int
        /// Seconds since sampling began.
        public var elapsed: Double
    }

    /// What the progress callback answers.
    public enum Control: Sendable {
        /// Keep sampling.
        case proceed
        /// Stop; ``sample(from:model:progress:)`` throws ``CacheError/cancelled(completedSteps:totalSteps:)``.
        case cancel
    }

    /// The model call: latent, timestep value, branch, step index → raw model output.
    public typealias Model = (_ latent: Tensor, _ timestep: Float, _ branch: BranchKey, _ step: Int) throws -> Tensor

    /// The number of steps N.
    public let steps: Int
    /// The timestep convention.
    public let timestepConvention: TimestepConvention
    /// The velocity convention.
    public let velocity: VelocityConvention
    /// The CFG guidance scale, or nil for a single (`.cond`) call per step.
    public let guidanceScale: Float?
    /// `N + 1` sigmas from 1 to 0.
    public let sigmas: [Float]
    /// `N` step sizes (negative).
    public let dt: [Float]
    /// `N` timestep values fed to the model.
    public let timesteps: [Float]

    /// The largest accepted step count (the sampler stores three arrays of `steps` values; a step count
    /// typed by mistake, e.g. `1e11`, would otherwise abort on allocation).
    public static let maximumSteps = 1_000_000

    /// A sampler.
    /// - Throws: ``CacheError/invalidSampler(_:)`` for `steps` outside `1 ... maximumSteps`, a sign
    ///   other than ±1, a non-positive channel count, or a non-finite guidance scale.
    public init(
        steps: Int, timestepConvention: TimestepConvention, velocity: VelocityConvention = .identity,
        guidanceScale: Float? = nil
    ) throws(CacheError) {
        guard steps >= 1 else { throw .invalidSampler("steps is \(steps); use at least 1") }
        guard steps <= Self.maximumSteps else {
            throw .invalidSampler("steps is \(steps); use at most \(Self.maximumSteps)")
        }
        guard velocity.sign == 1 || velocity.sign == -1 else {
            throw .invalidSampler("velocity sign is \(velocity.sign); use +1 or -1")
        }
        if case let .first(count, _) = velocity.channels, count < 1 {
            throw .invalidSampler("velocity channel count is \(count); use at least 1")
        }
        if let g = guidanceScale, !g.isFinite { throw .invalidSampler("guidance scale \(g) is not finite") }
        self.steps = steps
        self.timestepConvention = timestepConvention
        self.velocity = velocity
        self.guidanceScale = guidanceScale
        var s = (0..<steps).map { Float(1 - Double($0) / Double(steps)) }
        s.append(0)
        self.sigmas = s
        self.dt = (0..<steps).map { s[$0 + 1] - s[$0] }
        self.timesteps = (0..<steps).map { timestepConvention.timestep(sigma: s[$0]) }
    }

    /// The branches called per step, in order: `[.cond]`, or `[.cond, .uncond]` with CFG.
    public var branches: [BranchKey] { guidanceScale == nil ? [.cond] : [.cond, .uncond] }

    /// Runs the loop from `initial`.
    /// - Parameters:
    ///   - initial: the starting latent (noise at sigma 1).
    ///   - model: called once per step (twice with CFG: `.cond` first, then `.uncond`).
    ///   - progress: called after every step; return ``Control/cancel`` to stop.
    /// - Returns: the final latent.
    public func sample(
        from initial: Tensor, model: Model, progress: ((Progress) -> Control)? = nil
    ) throws -> Tensor {
        let start = DispatchTime.now().uptimeNanoseconds
        var latent = initial
        for i in 0..<steps {
            let t = timesteps[i]
            var out = try model(latent, t, .cond, i)
            if let g = guidanceScale {
                let uncond = try model(latent, t, .uncond, i)
                out = try Self.guided(cond: out, uncond: uncond, scale: g)
            }
            let v = try velocity(from: out, latentShape: latent.shape)
            latent = try Self.eulerStep(latent, velocity: v, dt: dt[i])
            if let progress {
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                if case .cancel = progress(Progress(step: i + 1, total: steps, elapsed: elapsed)) {
                    throw CacheError.cancelled(completedSteps: i + 1, totalSteps: steps)
                }
            }
        }
        return latent
    }

    /// `uncond + scale · (cond − uncond)` in Float32.
    public static func guided(cond: Tensor, uncond: Tensor, scale: Float) throws(CacheError) -> Tensor {
        guard cond.shape == uncond.shape else {
            throw .shapeMismatch("CFG outputs differ in shape: cond \(cond.shape), uncond \(uncond.shape)")
        }
        do { return try uncond + scale * (try cond - uncond) } catch { throw .tensor(error) }
    }

    /// `latent + dt · v` (one Float multiply, then one Float add per element).
    public static func eulerStep(_ latent: Tensor, velocity v: Tensor, dt: Float) throws(CacheError) -> Tensor {
        guard latent.shape == v.shape else {
            throw .shapeMismatch("velocity \(v.shape) does not match the latent \(latent.shape)")
        }
        do { return try latent + dt * v } catch { throw .tensor(error) }
    }

    /// Applies the velocity convention to a model output.
    public func velocity(from output: Tensor, latentShape: [Int]) throws(CacheError) -> Tensor {
        var v = output
        if case let .first(count, axis) = velocity.channels {
            do {
                let ax = try output.normalizedAxis(axis, operation: "velocity channel selection")
                guard count <= output.shape[ax] else {
                    throw CacheError.invalidSampler(
                        "cannot take the first \(count) channels of axis \(ax) of an output shaped \(output.shape)")
                }
                v = try output.slice(axis: ax, 0..<count)
            } catch let e as TensorError { throw .tensor(e) } catch let e as CacheError { throw e } catch {
                throw .invalidSampler("\(error)")
            }
        }
        if velocity.sign < 0 { v = -v }
        guard v.shape == latentShape else {
            throw .shapeMismatch("the velocity \(v.shape) (from the model output \(output.shape)) does not match the latent \(latentShape)")
        }
        return v
    }
}
