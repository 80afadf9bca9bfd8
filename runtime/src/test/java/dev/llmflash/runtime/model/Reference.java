package dev.llmflash.runtime.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.llmflash.formats.safetensors.SafetensorsFile;
import dev.llmflash.formats.tensor.Tensor;
import dev.llmflash.formats.testing.TestData;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;

/** The Hugging Face oracle data in testdata/reference (see its README). */
final class Reference {
    static final List<String> MODELS = List.of("opt-mini", "falcon-mini-relu", "opt-tiny-postln-bin");

    record Prompt(String model, int index, String text, int[] inputIds, int[] greedyNewIds, int[] top5) {
        @Override
        public String toString() {
            return model + "#" + index;
        }
    }

    private static JsonNode outputs;

    static synchronized JsonNode outputs() {
        if (outputs == null) {
            try {
                outputs = new ObjectMapper().readTree(TestData.reference("reference_outputs.json").toFile());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return outputs;
    }

    static List<Prompt> prompts() {
        List<Prompt> out = new ArrayList<>();
        for (String m : MODELS) {
            JsonNode ps = outputs().get(m).get("prompts");
            if (ps == null || ps.size() != 4) {
                throw new IllegalStateException("reference_outputs.json: expected 4 prompts for " + m);
            }
            for (int i = 0; i < ps.size(); i++) {
                JsonNode p = ps.get(i);
                out.add(new Prompt(m, i, p.get("text").asText(), ints(p.get("input_ids")), ints(p.get("greedy_new_ids")),
                        ints(p.get("last_logits_top5"))));
            }
        }
        return out;
    }

    static int[] ints(JsonNode a) {
        int[] r = new int[a.size()];
        for (int i = 0; i < r.length; i++) {
            r[i] = a.get(i).asInt();
        }
        return r;
    }

    /** HF's float32 logits for every position of a prompt: [seq][vocab]. */
    static float[][] logits(Prompt p) {
        try (SafetensorsFile f = SafetensorsFile.open(TestData.reference("reference_logits.safetensors"))) {
            Tensor t = f.tensor(p.model() + ".prompt" + p.index() + ".logits");
            int seq = t.dim(0), vocab = t.dim(1);
            float[][] r = new float[seq][vocab];
            for (int s = 0; s < seq; s++) {
                for (int v = 0; v < vocab; v++) {
                    r[s][v] = t.getFloat((long) s * vocab + v);
                }
            }
            return r;
        }
    }
}
