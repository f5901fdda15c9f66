import Tensors

/// TaylorSeer (Liu et al., 2025; diffusers 0.42.1 `TaylorSeerCacheConfig` with `use_lite_mode=True`): the
/// blocks run on a fixed interval after a warm-up; in between, the model output is forecast by a Taylor
/// expansion around the last computed call, from divided differences of the last computed outputs.
///
/// Per cache entry, the `k`-th call (the per-branch step) computes iff
/// `k < disableBeforeStep`, or `(k − disableBeforeStep − 1) mod cacheInterval == 0` (mod in `0 ..< cacheInterval`),
/// or `disableAfterStep` is set and `k ≥ disableAfterStep`; so step `disableBeforeStep` itself is forecast and the
/// first compute after the warm-up is `disableBeforeStep + 1`. A computed call's output `y` updates the factors:
/// `F₀ = y`, and with `Δ = k − last` since the previous update, `F_{j+1} = (F_j − F_j_old) / Δ` for
/// `j < maxOrder` while an old `F_j` exists (Float32); `last = k`. A forecast call returns
/// `Σ_o F_o · Δᵒ / o!` with `Δ = k − last`, summed in Float32 from order 0 up. Nothing of the block stack is
/// kept, and neither the blocks nor the output head run on a forecast call (only the embeddings).
public struct TaylorSeerConfiguration: Codable, Sendable, Equatable {
    /// Calls between two computes after the warm-up (diffusers' default 5).
    public private(set) var cacheInterval: Int
    /// The first steps that always compute (diffusers' default 3).
    public private(set) var disableBeforeStep: Int
    /// From this step on every call computes (nil: never; diffusers' default).
    public private(set) var disableAfterStep: Int?
    /// The highest Taylor order (diffusers' default 1).
    public private(set) var maxOrder: Int

    /// diffusers' defaults: interval 5, warm-up 3, no cool-down, order 1.
    public static let diffusersDefault = TaylorSeerConfiguration(unchecked: 5, 3, nil, 1)

    private init(unchecked interval: Int, _ before: Int, _ after: Int?, _ order: Int) {
        cacheInterval = interval
        disableBeforeStep = before
        disableAfterStep = after
        maxOrder = order
    }

    /// A validated configuration.
    /// - Throws: ``CacheError/invalidSchedule(_:)`` for an interval below 1, negative steps, or an order outside 0…8.
    public init(cacheInterval: Int = 5, disableBeforeStep: Int = 3, disableAfterStep: Int? = nil, maxOrder: Int = 1) throws(CacheError) {
        self.init(unchecked: cacheInterval, disableBeforeStep, disableAfterStep, maxOrder)
        try validate()
    }

    /// Re-checks every field.
    public func validate() throws(CacheError) {
        guard cacheInterval >= 1 else { throw .invalidSchedule("TaylorSeer cacheInterval is \(cacheInterval); use 1 or more") }
        guard disableBeforeStep >= 0 else { throw .invalidSchedule("TaylorSeer disableBeforeStep is \(disableBeforeStep); use 0 or more") }
        if let a = disableAfterStep, a < 0 { throw .invalidSchedule("TaylorSeer disableAfterStep is \(a); use 0 or more, or nil") }
        guard (0...8).contains(maxOrder) else { throw .invalidSchedule("TaylorSeer maxOrder is \(maxOrder); use 0 to 8") }
    }

    /// Why step `k` computes, or nil when it is forecast.
    public func computeReason(step k: Int) -> CacheDecision.Reason? {
        if k < disableBeforeStep { return .retainedStep }
        if let a = disableAfterStep, k >= a { return .cutoff }
        let offset = (k - disableBeforeStep - 1) % cacheInterval
        return (offset + cacheInterval) % cacheInterval == 0 ? .interval : nil
    }

    private enum CodingKeys: String, CodingKey { case cacheInterval, disableBeforeStep, disableAfterStep, maxOrder }

    /// Decodes (missing fields take diffusers' defaults) and validates.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        do {
            try self.init(cacheInterval: try c.decodeIfPresent(Int.self, forKey: .cacheInterval) ?? 5,
                          disableBeforeStep: try c.decodeIfPresent(Int.self, forKey: .disableBeforeStep) ?? 3,
                          disableAfterStep: try c.decodeIfPresent(Int.self, forKey: .disableAfterStep),
                          maxOrder: try c.decodeIfPresent(Int.self, forKey: .maxOrder) ?? 1)
        } catch let e as CacheError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.description))
        }
    }
}

/// TaylorSeer as a ``StepCachePolicy`` (see ``TaylorSeerConfiguration``): one set of Taylor factors per cache
/// entry; a skip is a forecast of the whole output.
public struct TaylorSeerPolicy: StepCachePolicy {
    /// The configuration.
    public let configuration: TaylorSeerConfiguration
    private var branches: [BranchKey: TaylorFactors] = [:]

    /// A fresh policy.
    public init(configuration: TaylorSeerConfiguration) { self.configuration = configuration }

    /// `taylorseer`.
    public var name: String { "taylorseer" }
    /// No residual: a skip forecasts the output.
    public var storedStreams: CacheStoredStreams { .none }

    /// Forgets every branch.
    public mutating func beginRun(steps: Int) throws(CacheError) {
        guard steps >= 1 else { throw .invalidStepCount(steps) }
        try configuration.validate()
        branches = [:]
    }

    /// The fixed rule; a branch without factors computes.
    public mutating func decide(_ call: CacheCall) throws(CacheError) -> [CacheDecision] {
        let state = branches[call.branch] ?? TaylorFactors()
        let held = state.factors.count
        if call.mustCompute { return [.forcedCompute(.stepMask, details: .taylorSeer(factors: held, stepsSinceUpdate: 0))] }
        if let reason = configuration.computeReason(step: call.step) {
            return [CacheDecision(action: .compute, forced: reason != .interval, reason: reason,
                                  details: .taylorSeer(factors: held, stepsSinceUpdate: 0))]
        }
        guard let last = state.lastUpdate, held > 0 else {
            return [.forcedCompute(.noPreviousInput, details: .taylorSeer(factors: 0, stepsSinceUpdate: 0))]
        }
        return [CacheDecision(action: .skip, forced: false, reason: .interval,
                              details: .taylorSeer(factors: held, stepsSinceUpdate: call.step - last))]
    }

    /// `Σ_o F_o · Δᵒ / o!`, summed from order 0 up in Float32.
    public mutating func reuse(_ call: CacheCall) throws(CacheError) -> CacheReuse {
        guard let y = try branches[call.branch]?.forecast(at: call.step) else {
            throw .replayMismatch("TaylorSeer: branch '\(call.branch)' forecasts step \(call.step) without a computed call")
        }
        return .output(y)
    }

    /// Updates the branch's factors from the computed output (divided differences over the steps since the
    /// last update; the expansion restarts from order 0 when the output's shape changed).
    public mutating func didCompute(_ call: CacheCall, residuals: [Tensor], output: Tensor) throws(CacheError) {
        var state = branches[call.branch] ?? TaylorFactors()
        try state.update(output, at: call.step, maxOrder: configuration.maxOrder)
        branches[call.branch] = state
    }

    /// Forgets the branch's factors.
    public mutating func reset(_ branch: BranchKey, batch: Int) { branches[branch] = nil }
}
