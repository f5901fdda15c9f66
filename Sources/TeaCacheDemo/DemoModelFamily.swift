import Foundation
import TeaCache

/// One model family the demo and the calibration can run: how to build a ``DemoWorkload`` from a
/// ``ModelSource``, which built-in preset it is compared with, and which thresholds show a useful
/// range of skip rates on its default (random-weight, benchmark-shaped) model.
///
/// Adding a family is one conformance and one entry in ``DemoModelRegistry/families``.
public protocol DemoModelFamily: Sendable {
    /// The `--model` name.
    var name: String { get }
    /// One line describing the default model.
    var summary: String { get }
    /// The reference coefficients for this family (e.g. ``TeaCachePreset/flux``).
    var builtInPreset: TeaCachePreset { get }
    /// Default thresholds of the demo (applied to every coefficient set).
    var defaultThresholds: [Double] { get }
    /// A description of the tensor TeaCache compares (written into calibrated presets).
    var modulatedInputDescription: String { get }
    /// Builds the model and the sampling run described by `source`.
    func makeWorkload(_ source: ModelSource) throws(DemoError) -> any DemoWorkload
}

/// The families known to `teacache demo` and `teacache calibrate`.
public enum DemoModelRegistry {
    /// Every registered family, the default first.
    public static let families: [any DemoModelFamily] = [FluxDemoFamily(), WanDemoFamily()]

    /// The family names.
    public static var names: [String] { families.map(\.name) }

    /// The family called `name`.
    /// - Throws: ``DemoError/unknownModel(_:available:)``.
    public static func family(named name: String) throws(DemoError) -> any DemoModelFamily {
        guard let f = families.first(where: { $0.name == name }) else {
            throw .unknownModel(name, available: names)
        }
        return f
    }
}
