/*
 * Choosing the transport that transport.type names.
 */
#include <stddef.h>

#include "transport.h"

const struct transport_ops *
transport_ops_for(const struct config *cfg)
{
	switch (cfg->transport.type) {
	case TRANSPORT_SMTP:
		return &transport_smtp_ops;
	case TRANSPORT_AMQP:
		return &transport_amqp_ops;
	case TRANSPORT_MAILDIR:
		return &transport_maildir_ops;
	}
	return NULL;
}
