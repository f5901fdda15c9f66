import Tensors

/// Forecast residuals for any residual-reusing policy (what cache-dit calls a calibrator): a skipped call adds
/// a first- or second-order Taylor forecast of the stored residual, from the residuals of the branch's last
/// computed calls, instead of the stale residual itself. The wrapped policy still decides.
///
/// Per cache entry and stored stream: a computed call at step `s` with region residual `R` updates the factors
/// `F₀ = R`, `F_{j+1} = (F_j − F_j_old) / (s − last)` (Float32, `j < order`, only from step
/// ``differencesFromStep`` on); a skip at step `s` adds `Σ_o F_o · (s − last)ᵒ / o!` (summed from order 0 up).
public struct ResidualForecast: Codable, Sendable, Equatable {
    /// The highest order (1: linear, 2: quadratic).
    public private(set) var order: Int
    /// Computed calls before this per-branch step keep only `F₀` (no differences). 0 forms them from the
    /// second computed call on; cache-dit's TaylorSeer calibrator forms them from step 3 on.
    public private(set) var differencesFromStep: Int

    /// A validated forecast.
    /// - Throws: ``CacheError/invalidSchedule(_:)`` for an order outside 1…4 or a negative step.
    public init(order: Int = 1, differencesFromStep: Int = 0) throws(CacheError) {
        self.order = order
        self.differencesFromStep = differencesFromStep
        try validate()
    }

    /// cache-dit's `TaylorSeerCalibratorConfig(taylorseer_order: order)` on the residual (its calibrator forms
    /// differences only when its counter, one behind the step, exceeds 1).
    public static func cacheDitTaylorSeer(order: Int = 1) throws(CacheError) -> ResidualForecast {
        try ResidualForecast(order: order, differencesFromStep: 3)
    }

    /// Re-checks the fields.
    public func validate() throws(CacheError) {
        guard (1...4).contains(order) else { throw .invalidSchedule("residual forecast order is \(order); use 1 to 4") }
        guard differencesFromStep >= 0 else { throw .invalidSchedule("differencesFromStep is \(differencesFromStep); use 0 or more") }
    }

    private enum CodingKeys: String, CodingKey { case order, differencesFromStep }

    /// Decodes and validates.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        do {
            try self.init(order: try c.decodeIfPresent(Int.self, forKey: .order) ?? 1,
                          differencesFromStep: try c.decodeIfPresent(Int.self, forKey: .differencesFromStep) ?? 0)
        } catch let e as CacheError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.description))
        }
    }
}

/// A policy whose stored-residual reuse is replaced by a ``ResidualForecast``; everything else is the base
/// policy's (its decisions are unchanged).
public struct ForecastingPolicy: StepCachePolicy {
    /// The policy that decides.
    public private(set) var base: any StepCachePolicy
    /// The forecast.
    public let forecast: ResidualForecast
    private var factors: [BranchKey: [TaylorFactors]] = [:]

    /// `base` with forecast residuals.
    /// - Throws: ``CacheError/policyUnsupported(_:)`` when `base` keeps no residual or decides per sample.
    public init(base: any StepCachePolicy, forecast: ResidualForecast) throws(CacheError) {
        guard base.storedStreams != .none, !base.decidesPerSample else {
            throw .policyUnsupported("\(base.name) keeps no whole-batch residual to forecast")
        }
        self.base = base
        self.forecast = forecast
    }

    /// The base's name with `+forecast<order>`.
    public var name: String { "\(base.name)+forecast\(forecast.order)" }
    /// The base's.
    public var needsModulatedInput: Bool { base.needsModulatedInput }
    /// The base's.
    public var blockSplit: CacheBlockSplit { base.blockSplit }
    /// The base's.
    public var storedStreams: CacheStoredStreams { base.storedStreams }
    /// The base's.
    public var callsMayExceedSteps: Bool { base.callsMayExceedSteps }

    /// Starts the base and forgets every forecast.
    public mutating func beginRun(steps: Int) throws(CacheError) {
        try base.beginRun(steps: steps)
        factors = [:]
    }

    /// The base's decision.
    public mutating func decide(_ call: CacheCall) throws(CacheError) -> [CacheDecision] { try base.decide(call) }

    /// The forecast residual where the base would add the stored one.
    public mutating func reuse(_ call: CacheCall) throws(CacheError) -> CacheReuse {
        let reuse = try base.reuse(call)
        guard case .storedResidual = reuse, let streams = factors[call.branch], !streams.isEmpty else { return reuse }
        var residuals: [Tensor] = []
        for f in streams {
            guard let r = try f.forecast(at: call.step) else { return reuse }
            residuals.append(r)
        }
        return .residual(residuals)
    }

    /// The base sees the call; the factors of every stored stream are updated.
    public mutating func didCompute(_ call: CacheCall, residuals: [Tensor], output: Tensor) throws(CacheError) {
        try base.didCompute(call, residuals: residuals, output: output)
        let kept = base.storedStreams == .first ? Array(residuals.prefix(1)) : residuals
        var streams = factors[call.branch] ?? []
        if streams.count != kept.count { streams = Array(repeating: TaylorFactors(), count: kept.count) }
        for (k, r) in kept.enumerated() {
            try streams[k].update(r, at: call.step, maxOrder: forecast.order, differences: call.step >= forecast.differencesFromStep)
        }
        factors[call.branch] = streams
    }

    /// Resets the base and the branch's forecast.
    public mutating func reset(_ branch: BranchKey, batch: Int) {
        base.reset(branch, batch: batch)
        factors[branch] = nil
    }
}
