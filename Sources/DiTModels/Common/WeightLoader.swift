import Foundation
import Safetensors
import Tensors

/// A change a family makes to a randomly drawn parameter (the timestep-embedding taper of the
/// fixtures' scheme, FORMAT.md §6): called with the parameter's diffusers name and its value.
public typealias WeightAdjustment = (_ name: String, _ tensor: inout Tensor) -> Void

/// Supplies parameters to model constructors by diffusers parameter name, and checks them.
///
/// Layers ask for each parameter through a ``WeightScope`` (`weights["transformer_blocks"][0]["attn"]`).
/// A loader over stored weights reads the stored *header* shape first and loads a tensor's data only
/// when its shape is the one the configuration implies, so a configuration that disagrees with its
/// weights never allocates the shapes it asks for. Every missing, mis-shaped or unreadable tensor is
/// recorded (the layer gets a scalar placeholder so construction can continue), and `finish()`
/// throws one ``ModelLoadError/weightMismatch(missing:unexpected:misshaped:)`` listing all of them
/// together with the stored tensors nobody asked for.
///
/// Loaders are created only by ``DiTFamily`` (``DiTFamily/load(_:weightsAt:precision:)``, ``DiTFamily/load(_:tensors:precision:)``,
/// ``DiTFamily/random(_:seed:steps:precision:parameterBudget:memoryBudget:)``), which always call `finish()` after the model is built: a
/// placeholder can never reach a forward pass.
public final class WeightLoader {
    private enum Source {
        case stored(StoredWeights)
        case random(SeededGenerator, adjust: WeightAdjustment?)
        /// Hands out placeholders and only counts: the sizes a configuration implies, with nothing allocated.
        case counting
    }

    private var source: Source
    /// Stored name by the diffusers name it supplies (after the family's renames).
    private var storedNameByParameter: [String: String] = [:]
    private var used: Set<String> = []
    private var missing: [String] = []
    private var misshaped: [ModelLoadError.MisshapedWeight] = []
    private var unreadable: ModelLoadError?
    private var overBudget = false
    /// The largest number of parameters a random loader draws (``SizeLimits/maximumRandomParameters``).
    let parameterBudget: Int

    /// The number of scalars handed out so far (the model's parameter count once construction is done).
    public private(set) var parameterCount = 0

    /// The bytes of every parameter handed out so far, in the precision it is held in (matrices at
    /// ``precision``, everything else float32); saturating.
    public private(set) var weightBytes: Double = 0

    /// The storage of every weight matrix (``WeightScope/matrix(_:rows:columns:)``, what ``Linear`` takes):
    /// float32 keeps the fixtures' 1e-4 parity; the other precisions are stated in the README.
    public let precision: WeightPrecision

    /// Whether ``supplied`` records the parameters (tests read them; a family's load turns it off so a
    /// model's weights are not held twice).
    var recordsSupplied = true

    /// This loader with ``supplied`` left empty (a family's public loads: the model holds the weights).
    func notRecording() -> WeightLoader {
        recordsSupplied = false
        return self
    }

    /// Every parameter handed out so far, by name (for a random loader: the generated weights, so a
    /// randomly initialised model can be saved or reloaded).
    public private(set) var supplied: [String: Tensor] = [:]

    /// Every weight matrix handed out so far, by name, in its storage (recorded like ``supplied``).
    public private(set) var suppliedMatrices: [String: WeightMatrix] = [:]

    /// A loader over in-memory tensors (for example, every tensor of a safetensors file).
    convenience init(tensors: [String: Tensor], rules: WeightRules = .none, precision: WeightPrecision = .float32) {
        self.init(stored: .tensors(tensors), rules: rules, precision: precision)
    }

    /// A loader over stored weights.
    init(stored: StoredWeights, rules: WeightRules = .none, precision: WeightPrecision = .float32) {
        source = .stored(stored)
        parameterBudget = .max
        self.precision = precision
        apply(rules)
    }

    /// A loader that allocates nothing: every parameter is a placeholder, and ``parameterCount`` and
    /// ``weightBytes`` say what a model of the configuration would hold in `precision`.
    init(countingIn precision: WeightPrecision) {
        source = .counting
        parameterBudget = .max
        self.precision = precision
    }

    /// Uses `rules` to match stored names with parameters (before any parameter is taken; the family's
    /// loading functions apply the family's rules).
    func apply(_ rules: WeightRules) {
        guard case .stored(let stored) = source else { return }
        storedNameByParameter = [:]
        for name in stored.names {
            guard !rules.ignores(name) else { continue }
            storedNameByParameter[rules.parameterName(forStored: name)] = name
        }
    }

    /// A loader that draws parameters from a seeded generator, following the fixtures' scheme
    /// (FORMAT.md §6): `*.bias` (1-D) ~ N(0, 0.02²); other 1-D `*.weight` = 1 + 0.1·N(0, 1);
    /// `*.weight` with 2+ dims ~ N(0, 1/fan_in) with fan_in the product of all but the first dim;
    /// anything else ~ N(0, 1/last_dim). `adjust` may rewrite a parameter after it is drawn.
    /// At most `parameterBudget` scalars are drawn; beyond that ``finish()`` throws
    /// ``ModelLoadError/memoryBudgetExceeded(what:bytes:budget:)``.
    init(randomSeed seed: UInt64, adjust: WeightAdjustment? = nil,
         parameterBudget: Int = SizeLimits.maximumRandomParameters, precision: WeightPrecision = .float32) {
        source = .random(SeededGenerator(seed: seed), adjust: adjust)
        self.parameterBudget = parameterBudget
        self.precision = precision
    }

    /// The scope of every parameter (no prefix).
    public var root: WeightScope { WeightScope(loader: self, prefix: "") }

    /// The parameter `name` (a full diffusers name) with the given shape.
    func take(_ name: String, shape: [Int]) -> Tensor {
        count(name, shape: shape, bytesPerValue: 4)
        return draw(name, shape: shape)
    }

    /// The weight matrix `name` (`[rows, columns]`) in ``precision``: stored 16-bit and int8 weights of
    /// that precision are used in place from the mapped file; anything else is converted after reading.
    func takeMatrix(_ name: String, rows: Int, columns: Int) -> WeightMatrix {
        let shape = [rows, columns]
        count(name, shape: shape, bytesPerValue: precision.bytesPerWeight)
        if case .stored(let stored) = source, let file = stored.safetensors {
            guard let storedName = storedName(for: name, shape: shape, stored: stored) else { return .placeholder }
            do throws(SafetensorsError) {
                let m = try file.weightMatrix(named: storedName, precision: precision)
                record(name, m)
                return m
            } catch {
                if unreadable == nil { unreadable = .invalidWeights(path: stored.path, error: error) }
                return .placeholder
            }
        }
        let t = draw(name, shape: shape)
        guard t.shape == shape else { return .placeholder }  // a reported placeholder
        do throws(TensorError) {
            let m = try WeightMatrix.make(t, precision: precision)
            record(name, m)
            return m
        } catch {
            if unreadable == nil { unreadable = .unsupportedConfig(field: name, value: "\(precision)", reason: "\(error)") }
            return .placeholder
        }
    }

    /// Records a matrix handed out (with ``recordsSupplied``): in ``suppliedMatrices``, and in ``supplied``
    /// as its float32 tensor when it is stored in float32 (the same storage, nothing copied).
    private func record(_ name: String, _ m: WeightMatrix) {
        guard recordsSupplied else { return }
        suppliedMatrices[name] = m
        if case .float32(let t) = m.storage { supplied[name] = t } else { supplied[name] = nil }
    }

    /// Adds `shape` to the counts (in Double: shapes come from validated configurations, every extent
    /// ≤ SizeLimits.maximumExtent, but a product of several can still be huge).
    private func count(_ name: String, shape: [Int], bytesPerValue: Double) {
        used.insert(name)
        let elements = shape.reduce(1.0) { $0 * Double($1) }
        parameterCount = Int(min(Double(parameterCount) + elements, Double(Int.max / 2)))
        weightBytes += elements * bytesPerValue
    }

    /// The stored name of parameter `name`, or nil (recorded as missing or mis-shaped).
    private func storedName(for name: String, shape: [Int], stored: StoredWeights) -> String? {
        guard let storedName = storedNameByParameter[name], let storedShape = stored.shape(of: storedName) else {
            missing.append(name)
            return nil
        }
        guard storedShape == shape else {
            misshaped.append(.init(name: name, expected: shape, found: storedShape))
            return nil
        }
        return storedName
    }

    /// The float32 value of parameter `name` (already counted).
    private func draw(_ name: String, shape: [Int]) -> Tensor {
        switch source {
        case .counting:
            return Self.placeholder
        case .stored(let stored):
            guard let storedName = storedName(for: name, shape: shape, stored: stored) else { return Self.placeholder }
            do {
                let t = try stored.load(storedName)
                if recordsSupplied { supplied[name] = t }
                return t
            } catch {
                if unreadable == nil { unreadable = error }
                return Self.placeholder
            }
        case .random(var rng, let adjust):
            guard !overBudget, Double(parameterCount) <= Double(parameterBudget) else {
                overBudget = true
                return Self.placeholder
            }
            var t = Self.draw(name: name, shape: shape, rng: &rng)
            adjust?(name, &t)
            source = .random(rng, adjust: adjust)
            if recordsSupplied { supplied[name] = t }
            return t
        }
    }

    /// Whether a stored tensor supplies `name` (always true for a random loader).
    func contains(_ name: String) -> Bool {
        if case .stored = source { return storedNameByParameter[name] != nil }
        return true
    }

    /// Whether any parameter so far was missing, mis-shaped or unreadable.
    var hasProblems: Bool { !missing.isEmpty || !misshaped.isEmpty || unreadable != nil || overBudget }

    /// Throws when any requested tensor was missing, mis-shaped or unreadable, any stored tensor was
    /// unused (other than those the family's ``WeightRules`` ignore), or a random model exceeded its budget.
    func finish() throws(ModelLoadError) {
        if overBudget {
            throw .memoryBudgetExceeded(what: "random weights of \(parameterCount) parameters",
                                        bytes: Double(parameterCount) * 4, budget: Double(parameterBudget) * 4)
        }
        var unexpected: [String] = []
        if case .stored(let stored) = source {
            unexpected = storedNameByParameter.filter { !used.contains($0.key) }.map(\.value)
                .filter { !stored.isInt8Scales($0) }.sorted()
        }
        if !missing.isEmpty || !unexpected.isEmpty || !misshaped.isEmpty {
            throw .weightMismatch(missing: missing, unexpected: unexpected, misshaped: misshaped)
        }
        if let unreadable { throw unreadable }
    }

    /// Handed out for a missing or mis-shaped parameter: never the requested shape, so a configuration
    /// that disagrees with its weights allocates nothing of its size.
    private static let placeholder = Tensor(scalar: 0)

    /// Random tensors of at least this many values (no demo or fixture model has one; full-size
    /// configurations do) are drawn in parallel by ``Tensor/randomApproximatelyNormal(shape:mean:standardDeviation:seed:)``.
    static let largeTensorElements = 1 << 21

    private static func draw(name: String, shape: [Int], rng: inout SeededGenerator) -> Tensor {
        let std: Float
        var mean: Float = 0
        if shape.count == 1 && name.hasSuffix(".bias") {
            std = 0.02
        } else if shape.count == 1 && name.hasSuffix(".weight") {
            mean = 1; std = 0.1
        } else if shape.count >= 2 && name.hasSuffix(".weight") {
            std = 1 / Float(max(shape.dropFirst().reduce(1, *), 1)).squareRoot()
        } else {
            std = 1 / Float(max(shape.last ?? 1, 1)).squareRoot()
        }
        // Shapes come from validated configurations and the loader's budget (a count that cannot
        // overflow), so drawing cannot fail; the placeholder is reported by the budget check if it did.
        let count = shape.reduce(1, *)
        if count >= largeTensorElements {
            // Full-size benchmark weights: the parallel approximate-normal draw, from one seed of the stream.
            return (try? Tensor.randomApproximatelyNormal(shape: shape, mean: mean, standardDeviation: std, seed: rng.next()))
                ?? placeholder
        }
        return (try? Tensor.randomNormal(shape: shape, mean: mean, standardDeviation: std, using: &rng)) ?? placeholder
    }
}

/// A view of a ``WeightLoader`` under a name prefix, the way diffusers nests its modules:
/// `weights["transformer_blocks"][3]["attn"]["to_q"].tensor("weight", shape: [d, d])` asks for
/// `transformer_blocks.3.attn.to_q.weight`.
///
/// Scopes are cheap values; layers take one instead of assembling key strings.
public struct WeightScope {
    let loader: WeightLoader
    /// The dotted name prefix of this scope (empty at the root).
    public let prefix: String

    /// The child scope `name` (which may itself contain dots).
    public subscript(_ name: String) -> WeightScope {
        WeightScope(loader: loader, prefix: key(name))
    }

    /// The child scope of a module list entry (`blocks.3`).
    public subscript(_ index: Int) -> WeightScope {
        WeightScope(loader: loader, prefix: key(String(index)))
    }

    /// The parameter `name` of this scope with the shape the configuration implies.
    ///
    /// A missing or mis-shaped parameter is recorded and reported, with every other problem, when the
    /// family finishes the load; the value returned meanwhile is a placeholder.
    public func tensor(_ name: String, shape: [Int]) -> Tensor {
        loader.take(key(name), shape: shape)
    }

    /// The parameter named by this scope itself (e.g. `weights["scale_shift_table"].tensor(shape:)`).
    public func tensor(shape: [Int]) -> Tensor {
        loader.take(prefix, shape: shape)
    }

    /// The weight matrix `name` of this scope, `[rows, columns]`, in the loader's precision
    /// (``WeightLoader/precision``); recorded and reported like ``tensor(_:shape:)`` when missing.
    public func matrix(_ name: String, rows: Int, columns: Int) -> WeightMatrix {
        loader.takeMatrix(key(name), rows: rows, columns: columns)
    }

    /// Whether the weights hold the parameter `name` of this scope (for optional parameters whose
    /// presence a configuration does not decide; a random loader holds everything).
    public func contains(_ name: String) -> Bool { loader.contains(key(name)) }

    /// The full dotted key of `name` under this scope.
    public func key(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }
}

/// How a family's stored weights map onto the parameters its model asks for, declared once per family
/// (``DiTFamily/weightRules``).
public struct WeightRules: Sendable {
    /// Stored tensors whose name contains any of these strings are ignored: not loaded, never reported
    /// as unexpected (diffusers' `_keys_to_ignore_on_load_unexpected`).
    public var ignoredPatterns: [String]
    /// Stored-name prefixes renamed before matching (`from` → `to`), for checkpoints saved under older
    /// module names.
    public var renamedPrefixes: [(from: String, to: String)]

    /// Rules.
    public init(ignoredPatterns: [String] = [], renamedPrefixes: [(from: String, to: String)] = []) {
        self.ignoredPatterns = ignoredPatterns
        self.renamedPrefixes = renamedPrefixes
    }

    /// No ignored tensors, no renames.
    public static let none = WeightRules()

    /// Whether the stored tensor `name` is ignored.
    public func ignores(_ name: String) -> Bool { ignoredPatterns.contains { name.contains($0) } }

    /// The diffusers parameter a stored tensor supplies.
    public func parameterName(forStored name: String) -> String {
        for (from, to) in renamedPrefixes where name.hasPrefix(from) {
            return to + name.dropFirst(from.count)
        }
        return name
    }
}
