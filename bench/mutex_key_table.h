/* The baseline for the plugin's cached path: the design of MariaDB's aws_key_management, whose
   lookups take one global mutex around ordered maps (std::map<id, version>,
   std::map<(id, version), key>). Here: sorted arrays searched by bisection behind one
   pthread mutex — the same shape, slightly cheaper than a red-black tree, so the baseline is
   not handicapped. Compiled apart from keybench.c and called through pointers, as the server
   calls a plugin. */
#ifndef KEYBENCH_MUTEX_KEY_TABLE_H
#define KEYBENCH_MUTEX_KEY_TABLE_H

/* Room for ids 1..count; then (key_id, version, bytes) are added before any lookup (the latest
   version is the highest added), and sealed (sorted) once. */
int mutex_key_table_reserve(unsigned count);
int mutex_key_table_add(unsigned key_id, unsigned version, const unsigned char *bytes, unsigned length);
void mutex_key_table_seal(void);

/* The encryption plugin contract (mysql/plugin_encryption.h). */
unsigned mutex_key_table_latest(unsigned key_id);
unsigned mutex_key_table_get_key(unsigned key_id, unsigned version, unsigned char *dst, unsigned *buflen);

/* The machine's ceiling: a lookup that reads a shared table and writes nothing shared, no lock.
   What it loses from 1 to N threads is the machine's (shared cores, other load), not a design's. */
unsigned null_key_table_latest(unsigned key_id);
unsigned null_key_table_get_key(unsigned key_id, unsigned version, unsigned char *dst, unsigned *buflen);

#endif
