import Foundation
import Synchronization
import TeaCache

/// The registry of model families, keyed by diffusers class name: `teacache verify`, `bench forward`,
/// `demo` and `calibrate` find a family here, and nowhere else.
public enum DiTFamilies {
    /// The families of this package, in lookup order. Adding a family adds one line here.
    public static let builtIn: [any DiTFamily.Type] = [
        FluxFamily.self,
        WanFamily.self,
        HunyuanVideoFamily.self,
        CogVideoXFamily.self,
        ConsisIDFamily.self,
        LTXVideoFamily.self,
        MochiFamily.self,
        LuminaNextFamily.self,
        Lumina2Family.self,
        EasyAnimateFamily.self,
        CosmosFamily.self,
        LatteFamily.self,
        HiDreamI1Family.self,
    ]

    private static let registered = Mutex<[any DiTFamily.Type]>([])

    /// Registers a family defined outside the package (it is looked up before the built-in ones, so it
    /// may also replace one for its class names). Registering the same type twice has no effect.
    public static func register(_ family: any DiTFamily.Type) {
        registered.withLock { list in
            if !list.contains(where: { $0 == family }) { list.insert(family, at: 0) }
        }
    }

    /// Every family: registered ones first, then ``builtIn``.
    public static var all: [any DiTFamily.Type] { registered.withLock { $0 } + builtIn }

    /// Every family's name.
    public static var names: [String] { all.map { $0.name } }

    /// The family called `name` (``DiTFamily/name``).
    /// - Throws: ``ModelLoadError/unknownFamily(_:known:)``.
    public static func family(named name: String) throws(ModelLoadError) -> any DiTFamily.Type {
        guard let f = all.first(where: { $0.name == name }) else { throw .unknownFamily(name, known: names) }
        return f
    }

    /// The family that loads the diffusers class `className`.
    /// - Throws: ``ModelLoadError/wrongClass(expected:got:)`` listing every known class.
    public static func family(forClass className: String) throws(ModelLoadError) -> any DiTFamily.Type {
        guard let f = all.first(where: { $0.classNames.contains(className) }) else {
            throw .wrongClass(expected: classNames, got: className)
        }
        return f
    }

    /// Every class name a family loads, in registry order.
    public static var classNames: [String] {
        var seen = Set<String>(), out: [String] = []
        for f in all { for c in f.classNames where seen.insert(c).inserted { out.append(c) } }
        return out
    }

    /// Every preset of every family, then the presets of models this package has no port of
    /// (`TeaCachePreset/unportedModels`); a name listed twice (a registered family re-listing a
    /// built-in preset) appears once, first occurrence kept.
    public static var presets: [TeaCachePreset] {
        var seen = Set<String>()
        return (all.flatMap { $0.presets } + TeaCachePreset.unportedModels).filter { seen.insert($0.name).inserted }
    }

    /// The preset called `name` among ``presets``, or nil.
    public static func preset(named name: String) -> TeaCachePreset? { presets.first { $0.name == name } }
}

extension DiTFamily {
    /// The diffusers classes of ``Configuration``.
    public static var classNames: [String] { Configuration.classNames }
}
