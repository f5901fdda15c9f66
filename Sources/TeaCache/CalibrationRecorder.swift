import Tensors

/// One calibration pair: how much the modulated input moved between two consecutive calls of a
/// branch, and how much the model output moved between the same calls.
public struct CalibrationSample: Codable, Sendable, Equatable {
    /// Relative L1 distance of the modulated input (the polynomial's x).
    public var inputDistance: Double
    /// Relative L1 distance of the model output (the polynomial's y).
    public var outputDistance: Double
    /// The per-branch step of the later call.
    public var step: Int
    /// The branch.
    public var branch: BranchKey

    /// A pair.
    public init(inputDistance: Double, outputDistance: Double, step: Int = 0, branch: BranchKey = .cond) {
        self.inputDistance = inputDistance
        self.outputDistance = outputDistance
        self.step = step
        self.branch = branch
    }
}

/// Collects ``CalibrationSample``s from uncached runs, per branch (spec §4: consecutive distances,
/// denominator = previous, CFG branches kept apart).
///
/// Attach it to a ``CachedTransformer`` (``CachedTransformer/calibrationRecorder``) running with
/// threshold 0, or feed it by hand with ``record(branch:modulatedInput:output:)``. Call
/// ``beginRun()`` between runs so the last call of one run is not paired with the first of the next.
public struct CalibrationRecorder: Sendable {
    private struct Previous: Sendable {
        var modulated: Tensor
        var output: Tensor
        var step: Int
    }

    /// The pairs recorded so far (over all runs).
    public private(set) var samples: [CalibrationSample] = []
    private var previous: [BranchKey: Previous] = [:]

    /// An empty recorder.
    public init() {}

    /// Starts a new run: forgets the previous tensors, keeps the samples.
    public mutating func beginRun() { previous = [:] }

    /// Records one call of `branch`; from the second call of a branch on, appends a sample.
    /// - Throws: ``CacheError/shapeMismatch(_:)`` when shapes change within a branch.
    public mutating func record(branch: BranchKey = .cond, modulatedInput: Tensor, output: Tensor) throws(CacheError) {
        let step = (previous[branch]?.step ?? -1) + 1
        if let p = previous[branch] {
            let x = try RelativeL1.distance(modulatedInput, previous: p.modulated)
            let y = try RelativeL1.distance(output, previous: p.output)
            samples.append(CalibrationSample(inputDistance: x, outputDistance: y, step: step, branch: branch))
        }
        previous[branch] = Previous(modulated: modulatedInput, output: output, step: step)
    }

    /// Appends samples recorded elsewhere.
    public mutating func append(contentsOf other: [CalibrationSample]) { samples.append(contentsOf: other) }
}
