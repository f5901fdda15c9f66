import DiTModels
import Foundation
import TeaCache

/// A TeaCache or MagCache preset, built in or read from a file.
public enum LoadedPreset: Sendable, Equatable {
    /// Rescaling coefficients, a default threshold and a schedule.
    case teaCache(TeaCachePreset)
    /// A magnitude-ratio curve.
    case magCache(MagCachePreset)

    /// The preset's name.
    public var name: String {
        switch self {
        case let .teaCache(p): return p.name
        case let .magCache(p): return p.name
        }
    }

    /// `teacache` or `magcache`.
    public var kind: String {
        switch self {
        case .teaCache: return "teacache"
        case .magCache: return "magcache"
        }
    }
}

/// Every preset `--preset` accepts by name, with the family it belongs to: what `teacache presets` lists.
public enum PresetCatalog {
    /// One built-in preset.
    public struct Entry: Sendable {
        /// The preset.
        public var preset: LoadedPreset
        /// The family whose `--model` runs it (nil: a model this package has no port of).
        public var family: String?

        /// The name `--preset` takes: the preset's name, `magcache:`-prefixed for MagCache ratios.
        public var reference: String {
            if case .magCache = preset { return "magcache:" + preset.name }
            return preset.name
        }

        /// Where the numbers come from.
        public var source: String {
            switch preset {
            case let .teaCache(p): return p.provenance
            case let .magCache(p): return p.provenance
            }
        }

        /// The default threshold and the published threshold → speedup pairs, in words.
        public var suggestedThresholds: String {
            switch preset {
            case let .teaCache(p):
                let pairs = p.speedups.map { "\(format($0.threshold)) → \(format($0.speedup))×" }
                return "default \(format(p.defaultThreshold))" + (pairs.isEmpty ? "" : "; " + pairs.joined(separator: ", "))
            case .magCache:
                return "0.06 (diffusers' default), 0.12, 0.24"
            }
        }
    }

    /// Every built-in preset: each family's TeaCache presets, its MagCache ratios, then the presets of
    /// models without a port.
    public static var entries: [Entry] {
        var out: [Entry] = [], seen = Set<String>()
        for f in DiTFamilies.all {
            for p in f.presets where seen.insert(p.name).inserted { out.append(Entry(preset: .teaCache(p), family: f.name)) }
            for p in f.magCachePresets where seen.insert("magcache:" + p.name).inserted {
                out.append(Entry(preset: .magCache(p), family: f.name))
            }
        }
        for p in TeaCachePreset.unportedModels where seen.insert(p.name).inserted {
            out.append(Entry(preset: .teaCache(p), family: nil))
        }
        return out
    }

    /// The built-in preset `reference` (a TeaCache preset's name, or `magcache:<name>`), or nil.
    public static func entry(named reference: String) -> Entry? {
        entries.first { $0.reference == reference }
    }

    /// A preset from a file (TeaCache or MagCache JSON, as `teacache calibrate` writes them) or, when no
    /// file has that path, a built-in preset of that name.
    /// - Throws: ``DemoError/invalidOption(_:)`` naming the problem (not found, a directory, permission
    ///   denied, neither kind of preset) and what to pass instead.
    public static func resolve(_ reference: String) throws(DemoError) -> LoadedPreset {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: reference, isDirectory: &isDirectory) {
            let url = URL(fileURLWithPath: reference)
            guard !isDirectory.boolValue else {
                throw .invalidOption("--preset \(reference): is a directory; give a preset JSON file or a built-in preset name")
            }
            let data: Data
            do { data = try Data(contentsOf: url) } catch {
                throw .invalidOption("--preset \(reference): \(FileProblem.describe(url)); give a readable preset JSON file")
            }
            return try decode(data, path: reference)
        }
        if let entry = entry(named: reference) { return entry.preset }
        let looksLikePath = reference.contains("/") || reference.hasSuffix(".json")
        throw .invalidOption("--preset \(reference): " + (looksLikePath ? "not found" : "no built-in preset or file of that name")
                             + "; give a preset JSON file or one of the names `teacache presets` lists")
    }

    /// A TeaCache preset JSON, or a MagCache one (told apart by its `magRatios` field).
    static func decode(_ data: Data, path: String) throws(DemoError) -> LoadedPreset {
        // Not a JSON object: the TeaCache decoder below reports why, as a typed error.
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        do {
            if object?["magRatios"] != nil { return .magCache(try MagCachePreset(jsonData: data)) }
            return .teaCache(try TeaCachePreset(jsonData: data))
        } catch {
            throw .invalidOption("--preset \(path): \(error); give a JSON file written by `teacache calibrate` "
                                 + "(--policy teacache or magcache) or a built-in preset name")
        }
    }
}

private func format(_ x: Double) -> String { String(format: "%g", x) }
