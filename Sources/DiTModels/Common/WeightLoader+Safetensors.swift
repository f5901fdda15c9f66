import Foundation
import Safetensors
import Tensors

extension WeightLoader {
    /// A loader over every tensor of a safetensors file (converted to Float32).
    ///
    /// - Throws: ``ModelLoadError/unreadableFile(path:reason:)`` when the file is missing, malformed, or
    ///   holds a tensor that cannot be converted to Float32.
    public convenience init(safetensorsAt url: URL) throws(ModelLoadError) {
        let tensors: [String: Tensor]
        do { tensors = try SafetensorsFile(contentsOf: url).loadAll() } catch {
            throw .unreadableFile(path: url.path, reason: "\(error)")
        }
        self.init(tensors: tensors)
    }
}
