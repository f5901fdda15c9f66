import DiTModels
import Foundation
import Tensors

/// The memory a benchmark or demo run is about to allocate, computed from the configuration and the
/// input sizes alone and checked against a `MemoryBudget` before the model, its weights or any input
/// exists: `teacache bench forward`, `teacache demo` and `teacache calibrate` all start here.
///
/// A refusal is `TensorError.memoryBudgetExceeded` naming the bytes needed, the budget and the largest
/// inputs of the same proportions that would fit (found from the analytic `ForwardCost` alone), so the
/// message says what to run instead.
public enum RunBudget {
    /// Checks a forward of `F` at `inputs` against `budget` and returns its cost and the share of the
    /// budget left for the weights (in parameters, float32).
    ///
    /// - Parameters:
    ///   - family: the model family.
    ///   - configuration: the model's configuration.
    ///   - inputs: the input sizes of the run.
    ///   - budget: what the run may allocate.
    ///   - activationSets: how many forward-sized activation sets the run keeps alive at once (1 for a
    ///     forward; 2 for a sampling run, whose cached residuals and CFG outputs live beside the forward).
    /// - Throws: `ModelLoadError` for invalid sizes; `TensorError.memoryBudgetExceeded` when the
    ///   activations alone exceed the budget.
    public static func check<F: DiTFamilyHarness>(
        _: F.Type, configuration: F.Configuration, inputs: BenchmarkInputs, budget: MemoryBudget,
        activationSets: Int = 1
    ) throws -> (cost: ForwardCost, parameterBudget: Int) {
        let cost = try F.cost(configuration, sizes: inputs)
        let need = Double(cost.activationBytes) * Double(max(activationSets, 1))
        if !(need.isFinite && need <= budget.bytes) {
            var operation = "a forward of \(cost.summary)" + (activationSets > 1 ? " (×\(activationSets) for a sampling run)" : "")
            if let fit = largestFittingInputs(F.self, configuration: configuration, inputs: inputs, budget: budget,
                                              activationSets: activationSets) {
                operation += "; inputs that fit: " + fit.values.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                    .joined(separator: ", ")
            }
            try budget.check(operation, bytes: need)
        }
        let left = max(budget.bytes - need, 0) / 4
        return (cost, Int(min(left, Double(Int.max / 8))))
    }

    /// The largest inputs of the same proportions as `inputs` (batch 1, every other size scaled by one
    /// factor, even sizes kept even) whose forward fits `budget`, or nil when not even the smallest does.
    public static func largestFittingInputs<F: DiTFamilyHarness>(
        _: F.Type, configuration: F.Configuration, inputs: BenchmarkInputs, budget: MemoryBudget, activationSets: Int = 1
    ) -> BenchmarkInputs? {
        func scaled(_ s: Double) -> BenchmarkInputs {
            BenchmarkInputs(inputs.values.reduce(into: [:]) { out, entry in
                let (name, v) = entry
                if name == "batch" { out[name] = 1; return }
                var x = max(1, Int((Double(v) * s).rounded(.down)))
                if v % 2 == 0 { x = max(2, x - x % 2) }
                out[name] = min(x, v)
            })
        }
        func fits(_ s: Double) -> Bool {
            // Sizes the family refuses do not fit; the search only looks for a smaller size that does.
            guard let c = try? F.cost(configuration, sizes: scaled(s)) else { return false }
            let need = Double(c.activationBytes) * Double(max(activationSets, 1))
            return need.isFinite && need <= budget.bytes
        }
        var lo = 0.0, hi = 1.0
        if fits(hi) { return scaled(hi) }
        guard fits(1e-9) else { return nil }
        for _ in 0..<40 {
            let mid = (lo + hi) / 2
            if fits(mid) { lo = mid } else { hi = mid }
        }
        return fits(lo) ? scaled(lo) : nil
    }
}
