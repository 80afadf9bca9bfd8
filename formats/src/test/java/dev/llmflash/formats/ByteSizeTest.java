package dev.llmflash.formats;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ByteSizeTest {
    @Test
    void parsesUnits() {
        assertEquals(2_000_000_000L, ByteSize.parse("2GB", "--x"));
        assertEquals(1L << 30, ByteSize.parse("1GiB", "--x"));
        assertEquals(6L << 30, ByteSize.parse("6G", "--x"));
        assertEquals(500_000_000L, ByteSize.parse("500MB", "--x"));
        assertEquals(1234L, ByteSize.parse("1234", "--x"));
        assertEquals(1_500_000_000L, ByteSize.parse(" 1.5gb ", "--x"));
    }

    @Test
    void refusesNonsense() {
        for (String bad : new String[] {"", "GB", "-1GB", "0", "abc", "1XB", "NaN"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ByteSize.parse(bad, "--shard-size"));
            assertTrue(e.getMessage().startsWith("--shard-size"), e.getMessage());
        }
    }
}
