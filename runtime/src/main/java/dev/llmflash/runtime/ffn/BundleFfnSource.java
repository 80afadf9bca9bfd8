package dev.llmflash.runtime.ffn;

import dev.llmflash.formats.FormatException;
import dev.llmflash.formats.bundle.FfnFile;

import java.lang.foreign.MemorySegment;

/**
 * FFN weights from a bundle's {@code ffn.bin}, memory-mapped: every neuron of every layer, read
 * through the neuron-major rows (the dense mode over a bundle; flash mode loads only some neurons).
 */
public record BundleFfnSource(FfnFile ffn) implements FfnSource {
    @Override
    public Ffn layer(int layer, String upName, String downName, int f, int d, float[] upBias, float[] downBias, Activation act) {
        if (layer >= ffn.layers() || ffn.dFfn() != f || ffn.dModel() != d) {
            throw new FormatException(ffn.path(), "holds " + ffn.layers() + " layers of " + ffn.dFfn() + " x " + ffn.dModel()
                    + " FFN weights but the manifest's config implies layer " + layer + " of " + f + " x " + d,
                    "the bundle is inconsistent; re-convert it");
        }
        MemorySegment block = ffn.block(layer);
        return new NeuronMajorFfn(block.asSlice(ffn.upOffset(0)), block.asSlice(ffn.downOffset(0)), ffn.dtype(), f, d,
                ffn.stride(), upBias, downBias, act);
    }
}
