package dev.llmflash.runtime.ffn;

import dev.llmflash.formats.checkpoint.Checkpoint;
import dev.llmflash.runtime.weights.Matrix;

/** FFN weights straight from an HF checkpoint: the two matrices, memory-mapped, in HF's layout. */
public record CheckpointFfnSource(Checkpoint checkpoint) implements FfnSource {
    @Override
    public Ffn layer(int layer, String upName, String downName, int f, int d, float[] upBias, float[] downBias, Activation act) {
        return new DenseFfn(Matrix.load(checkpoint, upName, f, d), upBias, Matrix.load(checkpoint, downName, d, f), downBias, act);
    }
}
