/*
 * Run by scripts/pulsar.sh before the standalone broker starts on existing data (java single-file source launch,
 * with the broker's classpath): removes the "ephemeral" nodes that a previous broker process left in the RocksDB
 * metadata store.
 *
 * Why: the RocksDB metadata store keeps ephemeral nodes on disk and only drops the ones owned by an earlier
 * process lazily, when it meets them. The bookie's registration /ledgers/available/<host:port> is such a node
 * (a TERM stop does not close the embedded bookie in Pulsar 3.0, a kill -9 closes nothing). When the restarted
 * bookie re-registers, the lazy delete of the stale node races with the new lock, and the lock revalidation can
 * loop forever (BookieServiceInfo has no equals(): apache/pulsar PR 25001, apache/bookkeeper PR 4686): the broker
 * then sees no writable bookie and topics fail to load. Dropping stale nodes before the start avoids the race.
 *
 * Usage: java -cp "<lib>/*" CleanStaleEphemeral.java <metadata-dir>
 */
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import org.apache.pulsar.metadata.api.MetadataStoreConfig;
import org.apache.pulsar.metadata.api.extended.MetadataStoreExtended;

public class CleanStaleEphemeral {
    public static void main(String[] args) throws Exception {
        Path dir = Paths.get(args[0]).toAbsolutePath();
        if (!Files.isDirectory(dir)) {
            return;
        }
        MetadataStoreExtended store = MetadataStoreExtended.create("rocksdb://" + dir,
                MetadataStoreConfig.builder().metadataStoreName("stale-ephemeral-cleanup").build());
        try {
            // This process is a new owner, so every ephemeral node on disk is stale. Listing "/" makes the
            // store scan every key below "/" and delete the stale ephemeral ones it meets.
            List<String> top = store.getChildren("/").get();
            // Same for the bookie registrations, explicitly (getChildren results may be cached).
            for (String p : new String[] {"/ledgers/available", "/ledgers/available/readonly"}) {
                if (store.exists(p).get()) {
                    for (String child : store.getChildren(p).get()) {
                        store.get(p + "/" + child).get();
                    }
                }
            }
            Thread.sleep(500); // the deletes are issued asynchronously
            System.out.println("stale ephemeral cleanup done; top-level nodes: " + top);
        } finally {
            store.close();
        }
    }
}
