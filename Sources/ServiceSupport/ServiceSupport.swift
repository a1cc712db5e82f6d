// Module ServiceSupport.
