import Foundation
import Tensors

/// Taylor factors of a tensor sequence sampled at computed steps: what TaylorSeer forecasts the output with
/// and ``ResidualForecast`` forecasts residuals with.
///
/// ``update(_:at:maxOrder:differences:)`` keeps `F₀ = y` and, with `Δ = step − last`, the divided differences
/// `F_{j+1} = (F_j − F_j_old) / Δ` (Float32) for `j < maxOrder` while an old factor of the same shape exists;
/// ``forecast(at:)`` sums `F_o · Δᵒ / o!` from order 0 up in Float32.
struct TaylorFactors: Sendable {
    private(set) var factors: [Tensor] = []
    private(set) var lastUpdate: Int?

    /// Replaces the factors by those of `y` at `step`; `differences` false keeps only `F₀` (a warm-up rule).
    mutating func update(_ y: Tensor, at step: Int, maxOrder: Int, differences: Bool = true) throws(CacheError) {
        var new = [y]
        if differences, let last = lastUpdate, step != last {
            let delta = Float(step - last)
            do {
                for j in 0..<min(maxOrder, factors.count) {
                    guard factors[j].shape == new[j].shape else { break }
                    new.append((try new[j] - factors[j]).mapVector { $0 / delta })
                }
            } catch { throw .tensor(error) }
        }
        factors = new
        lastUpdate = step
    }

    /// `Σ_o F_o · Δᵒ / o!` with `Δ = step − last`; nil before the first update.
    func forecast(at step: Int) throws(CacheError) -> Tensor? {
        guard let last = lastUpdate, var y = factors.first else { return nil }
        let offset = Double(step - last)
        var factorial = 1.0
        do {
            for (order, factor) in factors.enumerated().dropFirst() {
                factorial *= Double(order)
                y = try y + factor * Float(pow(offset, Double(order)) / factorial)
            }
        } catch { throw .tensor(error) }
        return y
    }
}
