/* Flotilla: a multi-Raft replication engine on io_uring.
 *
 * This is the public header an embedder includes. Errors are 0 or a negative
 * value: a negative errno or a Flotilla code below the errno range; fl_strerror()
 * names both. */
#ifndef FLOTILLA_H
#define FLOTILLA_H

#define FLOTILLA_VERSION_MAJOR 0
#define FLOTILLA_VERSION_MINOR 1
#define FLOTILLA_VERSION_PATCH 0

/* Text for an error returned by any Flotilla function. Never NULL. */
const char *fl_strerror(int err);

/* "major.minor.patch" of the linked library. */
const char *fl_version(void);

#endif /* FLOTILLA_H */
